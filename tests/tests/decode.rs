//! Block-parallel decoding (issue 18): a file source decoded by a pool of
//! threads in line-aligned blocks gives exactly one thread's outputs: the
//! same window rows (late records included), a sink fed straight from the
//! source in the file's order, byte for byte, and bad records with their
//! true line numbers. Kill and restart: tests/tests/crash.rs.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use kflow_tests::fixtures::{self, assert_rows_equal, events};
use kflow_tests::job::JobDir;

/// The click job over `clicks.jsonl` with a 1 s out-of-orderness (so some
/// records are late), its `.late` and a raw copy of the source in files.
fn job() -> String {
    format!(
        "{}{}{}\n[sinks.raw]\ninput = \"clicks\"\ntype = \"file\"\npath = \"out/raw.jsonl\"\n",
        fixtures::header("blocks", "100ms"),
        fixtures::file_source("clicks.jsonl", "1s"),
        fixtures::click_windows()
    )
}

/// 60,000 events (about 8 MB: dozens of blocks) with a malformed line, a
/// line without its event time and a blank line every 997 lines, and a
/// last line without its newline; and how many bad lines it has.
fn input() -> (String, usize) {
    let (mut out, mut bad) = (String::new(), 0);
    for (i, line) in events(60_000, 300, 17).lines().enumerate() {
        match i % 997 {
            100 => out.push_str("{not json\n"),
            500 => out.push_str("{\"user_id\":\"u1\",\"type\":\"checkout\"}\n"),
            900 => out.push_str("   \n"),
            _ => {}
        }
        bad += usize::from(matches!(i % 997, 100 | 500));
        out.push_str(line);
        out.push('\n');
    }
    out.pop();
    (out, bad)
}

fn run(threads: &str) -> JobDir {
    let dir = JobDir::new(&job());
    dir.write("clicks.jsonl", &input().0);
    dir.run_job_ok(&["--decode-threads", threads]);
    dir
}

#[test]
fn a_pool_of_decoders_gives_one_threads_outputs() {
    let one = run("1");
    let pool = run("3");
    assert_rows_equal(
        &one.read("out/result.jsonl"),
        &pool.read("out/result.jsonl"),
    );
    let raw = one.read("out/raw.jsonl");
    assert_eq!(raw.lines().count(), 60_000, "every good line, once");
    assert!(raw == pool.read("out/raw.jsonl"), "the raw copies differ");
    let dead = |dir: &JobDir| dir.read(".kflow/blocks/dead-letter.jsonl");
    let errors = dead(&one);
    assert_eq!(errors.lines().count(), input().1, "{errors}");
    // The first bad line is the 101st of the file.
    assert!(errors.contains("\"line\":101"), "{errors}");
    assert_eq!(errors, dead(&pool));
}

#[test]
fn a_pool_of_decoders_drops_the_repeats_one_thread_drops() {
    // Repeats of an event id right away, 1,500 lines (15 s of event time,
    // about a 256 KB block) later, and 3,000 lines later, past the 20 s
    // dedup span; ids that are null never repeat.
    let job = format!(
        "{}{}dedup = {{ field = \"event_id\", within = \"20s\" }}\n{}\n\
         [sinks.raw]\ninput = \"clicks\"\ntype = \"file\"\npath = \"out/raw.jsonl\"\n",
        fixtures::header("blocks", "100ms"),
        fixtures::file_source("clicks.jsonl", "1s"),
        fixtures::click_windows()
    );
    let events: Vec<String> = events(60_000, 300, 29).lines().map(String::from).collect();
    let mut input = String::new();
    for (i, line) in events.iter().enumerate() {
        input.push_str(line);
        input.push('\n');
        if i % 41 == 0 {
            input.push_str(line);
            input.push('\n');
        }
        if i % 59 == 0 && i >= 1_500 {
            input.push_str(&events[i - 1_500]);
            input.push('\n');
        }
        if i % 53 == 0 && i >= 3_000 {
            input.push_str(&events[i - 3_000]);
            input.push('\n');
        }
        if i % 97 == 0 {
            input.push_str(&line.replace("\"event_id\"", "\"event_id\":null,\"was\""));
            input.push('\n');
        }
    }
    let run = |threads: &str| {
        let dir = JobDir::new(&job);
        dir.write("clicks.jsonl", &input);
        dir.run_job_ok(&["--decode-threads", threads]);
        dir
    };
    let one = run("1");
    let pool = run("3");
    let raw = one.read("out/raw.jsonl");
    // Every event once, the null-id copies, and the repeats whose first
    // copy had expired.
    let null_ids = (0..60_000).filter(|i| i % 97 == 0).count();
    let expired = (3_000..60_000).filter(|i| i % 53 == 0).count();
    assert_eq!(raw.lines().count(), 60_000 + null_ids + expired);
    assert!(raw == pool.read("out/raw.jsonl"), "the raw copies differ");
    assert_rows_equal(
        &one.read("out/result.jsonl"),
        &pool.read("out/result.jsonl"),
    );
}

#[test]
fn lines_that_are_not_utf8_go_to_the_dead_letter_file_and_the_rest_decode() {
    // Every line carries non-ASCII text in a field no window reads, and
    // every 499th of the first 3,000 (the first blocks) has a byte that is
    // not UTF-8 there: a block is checked as a whole, and one that fails is
    // checked again line by line.
    let (mut input, mut bad) = (Vec::new(), 0);
    for (i, line) in events(20_000, 300, 5).lines().enumerate() {
        let note = if i < 3_000 && i % 499 == 7 {
            bad += 1;
            b"{\"note\":\"caf\xff\",".to_vec()
        } else {
            "{\"note\":\"café ☕\",".as_bytes().to_vec()
        };
        input.extend_from_slice(&note);
        input.extend_from_slice(&line.as_bytes()[1..]);
        input.push(b'\n');
    }
    let run = |threads: &str| {
        let dir = JobDir::new(&job());
        std::fs::write(dir.path().join("clicks.jsonl"), &input).unwrap();
        dir.run_job_ok(&["--decode-threads", threads]);
        dir
    };
    for dir in [run("1"), run("3")] {
        let raw = dir.read("out/raw.jsonl");
        assert_eq!(raw.lines().count(), 20_000 - bad);
        assert!(raw.lines().all(|l| l.starts_with("{\"note\":\"café ☕\"")));
        let errors = dir.read(".kflow/blocks/dead-letter.jsonl");
        assert_eq!(errors.lines().count(), bad, "{errors}");
        assert!(
            errors.contains("\"line\":8}") && errors.contains("invalid UTF-8 at column 13"),
            "{errors}"
        );
    }
}
