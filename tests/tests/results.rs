//! Result rows between windows: a window whose rows go only to other
//! windows routes them without writing their JSON text (issue 18), yet a
//! row the downstream window rejects reaches the dead letters whole.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use kflow_tests::fixtures;
use kflow_tests::job::JobDir;

#[test]
fn a_rejected_result_row_reaches_the_dead_letters_whole() {
    // `per_user` feeds only windows; `bad` sums its string key, which
    // every row fails, `ok` counts its rows.
    let job = format!(
        "{}{}\n[windows.per_user]\ninput = \"clicks\"\nkey = [\"user_id\"]\ntumbling = \"1m\"\n\
         aggregates = {{ clicks = \"count()\" }}\n\
         \n[windows.bad]\ninput = \"per_user\"\ntumbling = \"1m\"\n\
         aggregates = {{ users = \"sum(user_id)\" }}\n\
         \n[windows.ok]\ninput = \"per_user\"\ntumbling = \"1m\"\n\
         aggregates = {{ users = \"count()\" }}\n\
         \n[sinks.result]\ninput = \"ok\"\ntype = \"file\"\npath = \"out/result.jsonl\"\n",
        fixtures::header("results", "1s"),
        fixtures::file_source("clicks.jsonl", "0s"),
    );
    let dir = JobDir::new(&job);
    dir.write(
        "clicks.jsonl",
        "{\"user_id\":\"u1\",\"ts\":\"2026-11-25T10:00:01Z\"}\n\
         {\"user_id\":\"u1\",\"ts\":\"2026-11-25T10:00:02Z\"}\n\
         {\"user_id\":\"u2\",\"ts\":\"2026-11-25T10:00:03Z\"}\n",
    );
    dir.run_job_ok(&[]);
    let result = dir.read("out/result.jsonl");
    assert!(result.contains("\"users\":2"), "{result}");
    let dead = dir.read(".kflow/results/dead-letter.jsonl");
    assert_eq!(dead.lines().count(), 2, "{dead}");
    let row = "{\\\"window_start\\\":\\\"2026-11-25T10:00:00Z\\\",\
               \\\"window_end\\\":\\\"2026-11-25T10:01:00Z\\\",\
               \\\"user_id\\\":\\\"u1\\\",\\\"clicks\\\":2}";
    assert!(dead.contains(row), "{dead}");
    assert!(dead.contains("needs a number in `user_id`"), "{dead}");
}
