//! Changing a job between runs (issues 3 and 20): which changes resume
//! from the checkpoint and which refuse until `--reset`, and `kflow plan
//! --against` saying so, node by node, before a deploy. Every verdict is
//! checked against what `kflow run` then does from the same checkpoint.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;

use kflow_benches::jobs::{ClickJob, ClickSource};
use kflow_benches::workload::Workload;
use kflow_tests::job::{JobDir, TIMEOUT};
use kflow_tests::process::run_with_timeout;

/// The clickstream job: `clicks.jsonl`, checkouts per user per minute into
/// `out/result.jsonl`, state in `.kflow/changes`.
fn job() -> String {
    job_with("tumbling = \"1m\"")
}

/// The same job with another window kind.
fn job_with(window: &str) -> String {
    let mut job = ClickJob::new(
        "changes",
        ClickSource::File {
            path: "clicks.jsonl".into(),
        },
    );
    job.window = window.to_string();
    job.toml()
}

fn input() -> Workload {
    Workload {
        events: 100_000,
        users: 1_000,
        seed: 8,
        ..Workload::default()
    }
}

fn interrupted() -> JobDir {
    JobDir::interrupted(&job(), &input())
}

/// `(user, window start, window end)` -> the row, of a result file.
fn rows_by_window(text: &str) -> BTreeMap<(String, String, String), serde_json::Value> {
    text.lines()
        .map(|line| {
            let row: serde_json::Value = serde_json::from_str(line).unwrap();
            let field = |name: &str| row[name].as_str().unwrap().to_string();
            let key = (field("user_id"), field("window_start"), field("window_end"));
            (key, row)
        })
        .collect()
}

/// Issue 20: an aggregate appended to a window resumes from the
/// checkpoint: the stored partials get an empty accumulator for it, so the
/// other aggregates come out exactly as in an uninterrupted run, and the
/// new one covers only what was read after the restart (a minimum over
/// fewer records: never below the uninterrupted run's). Tumbling, sliding
/// and session windows (partials, panes, session sets).
#[test]
fn issue_20_an_appended_aggregate_resumes_and_starts_empty_on_open_windows() {
    for window in [
        "tumbling = \"1m\"",
        "sliding = { size = \"2m\", slide = \"1m\" }",
        "session = { gap = \"30s\" }",
    ] {
        let before = job_with(window);
        let after = before.replace(
            "top = \"max(amount)\"",
            "top = \"max(amount)\", low = \"min(amount)\"",
        );
        let dir = JobDir::interrupted(&before, &input());
        let (id, _) = dir.last_checkpoint().unwrap();
        dir.write("job.toml", &after);
        let run = run_with_timeout(dir.loud_job_command(), TIMEOUT).unwrap();
        assert!(run.status.success(), "{window}: {}", run.stderr);
        assert!(
            run.stderr.contains(&format!("restored checkpoint {id}")),
            "{}",
            run.stderr
        );
        assert!(
            run.stderr.contains("aggregates appended (low=Min(amount))"),
            "{}",
            run.stderr
        );
        // Partials stored at the checkpoint were extended, summed over the
        // window's partitions (`window `per_user/0`: N stored partials ...`).
        let extended: u64 = run
            .stderr
            .lines()
            .filter_map(|l| {
                l.split_once(" stored partials extended")?
                    .0
                    .rsplit(' ')
                    .next()
            })
            .map(|n| n.parse::<u64>().unwrap())
            .sum();
        assert!(extended > 0, "{window}: {}", run.stderr);

        let reference = JobDir::with_workloads(&after, &[("clicks.jsonl", input())]);
        reference.run_job_ok(&[]);
        let want = rows_by_window(&reference.read("out/result.jsonl"));
        let got = rows_by_window(&dir.read("out/result.jsonl"));
        assert_eq!(
            got.keys().collect::<Vec<_>>(),
            want.keys().collect::<Vec<_>>(),
            "{window}: the same windows"
        );
        let mut with_low = 0;
        for (key, row) in &got {
            let whole = &want[key];
            for field in ["events", "revenue", "top"] {
                assert_eq!(row[field], whole[field], "{window} {key:?} {field}");
            }
            if let Some(low) = row["low"].as_f64() {
                with_low += 1;
                assert!(low >= whole["low"].as_f64().unwrap(), "{window} {key:?}");
            }
        }
        assert!(with_low > 0, "{window}: no row has the new aggregate");
    }
}

/// One kind of change, the node it touches and the verdict it must get.
struct Change {
    what: &'static str,
    edit: fn(String) -> String,
    node: &'static str,
    verdict: &'static str,
}

const ANOTHER_WINDOW: &str = "\n[windows.per_type]\ninput = \"clicks\"\nkey = [\"type\"]\n\
    tumbling = \"1m\"\naggregates = { n = \"count()\" }\n\
    \n[sinks.types]\ninput = \"per_type\"\ntype = \"file\"\npath = \"out/types.jsonl\"\n";

const CHANGES: &[Change] = &[
    Change {
        what: "nothing",
        edit: |job| job,
        node: "window per_user",
        verdict: "compatible",
    },
    Change {
        what: "a longer window",
        edit: |job| job.replace("tumbling = \"1m\"", "tumbling = \"5m\""),
        node: "window per_user",
        verdict: "incompatible",
    },
    Change {
        what: "an added aggregate",
        edit: |job| {
            job.replace(
                "top = \"max(amount)\"",
                "top = \"max(amount)\", low = \"min(amount)\"",
            )
        },
        node: "window per_user",
        verdict: "compatible, will log",
    },
    Change {
        what: "an aggregate inserted before the others",
        edit: |job| {
            job.replace(
                "events = \"count()\"",
                "low = \"min(amount)\", events = \"count()\"",
            )
        },
        node: "window per_user",
        verdict: "incompatible",
    },
    Change {
        what: "more disorder allowed",
        edit: |job| {
            job.replace(
                "max_out_of_orderness = \"5s\"",
                "max_out_of_orderness = \"9s\"",
            )
        },
        node: "source clicks",
        verdict: "incompatible",
    },
    Change {
        what: "another filter condition",
        edit: |job| job.replace("'product_view'", "'add_to_cart'"),
        node: "filter checkouts",
        verdict: "compatible, will log",
    },
    Change {
        what: "another sink of the same window",
        edit: |job| {
            job + "\n[sinks.copy]\ninput = \"per_user\"\ntype = \"file\"\npath = \"out/copy.jsonl\"\n"
        },
        node: "sink copy",
        verdict: "compatible",
    },
    Change {
        what: "another window",
        edit: |job| job + ANOTHER_WINDOW,
        node: "window per_type",
        verdict: "compatible",
    },
];

/// The verdict `plan --against` printed for `node` (its line is the node's
/// name, padding, then the verdict).
fn verdict_of<'a>(report: &'a str, node: &str) -> Option<&'a str> {
    report.lines().find_map(|line| {
        let rest = line.trim_start().strip_prefix(node)?;
        rest.starts_with("  ").then(|| rest.trim())
    })
}

#[test]
fn issue_20_plan_against_gives_each_change_the_verdict_run_acts_on() {
    let base = interrupted();
    let (id, _) = base.last_checkpoint().unwrap();
    for change in CHANGES {
        let dir = base.copy();
        dir.write("job.toml", &(change.edit)(job()));
        let plan = dir.run(&["plan", "job.toml", "--against", ".kflow/changes"], &[]);
        let context = format!("{}:\n{}{}", change.what, plan.stdout, plan.stderr);
        assert_eq!(
            verdict_of(&plan.stdout, change.node),
            Some(change.verdict),
            "{context}"
        );
        assert!(
            plan.stdout.contains(&format!("checkpoint {id}")),
            "{context}"
        );
        let compatible = change.verdict != "incompatible";
        assert_eq!(
            plan.status.code(),
            Some(if compatible { 0 } else { 1 }),
            "{context}"
        );
        // What `run` does from the same checkpoint.
        let run = run_with_timeout(dir.loud_job_command(), TIMEOUT).unwrap();
        if compatible {
            assert!(run.status.success(), "{context}\nrun: {}", run.stderr);
            assert!(
                run.stderr.contains(&format!("restored checkpoint {id}")),
                "{context}\nrun: {}",
                run.stderr
            );
        } else {
            assert_eq!(run.status.code(), Some(1), "{context}\nrun: {}", run.stderr);
            assert!(
                run.stderr.contains(change.node),
                "{context}\nrun: {}",
                run.stderr
            );
            assert!(
                run.stderr.contains("--reset"),
                "{context}\nrun: {}",
                run.stderr
            );
        }
    }
}

#[test]
fn issue_20_plan_against_a_finished_or_missing_checkpoint() {
    let dir = JobDir::new(&job());
    let out = dir.run(&["plan", "job.toml", "--against", ".kflow/changes"], &[]);
    assert_eq!(out.status.code(), Some(3), "{}{}", out.stdout, out.stderr);
    assert!(out.stderr.contains(".kflow/changes"), "{}", out.stderr);

    let done = interrupted();
    done.run_job_ok(&[]);
    done.write(
        "job.toml",
        &job().replace("tumbling = \"1m\"", "tumbling = \"5m\""),
    );
    let out = done.run(&["plan", "job.toml", "--against", ".kflow/changes/db"], &[]);
    assert_eq!(out.status.code(), Some(0), "{}{}", out.stdout, out.stderr);
    assert!(out.stdout.contains("that run finished"), "{}", out.stdout);
}
#[test]
fn issue_3_changed_window_refuses_to_resume_unless_reset() {
    let job = job();
    let dir = interrupted();
    dir.write(
        "job.toml",
        &job.replace("tumbling = \"1m\"", "tumbling = \"5m\""),
    );
    let out = dir.run_job(&[], &[]);
    assert_eq!(out.status.code(), Some(1), "{}", out.stderr);
    assert!(
        out.stderr.contains("window per_user changed"),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("--reset"), "{}", out.stderr);
    assert!(!out.stderr.contains("panicked"), "{}", out.stderr);
    let out = dir.run_job(&["--reset"], &[]);
    assert!(out.status.success(), "{}", out.stderr);
}

#[test]
fn issue_3_changed_filter_resumes_and_says_so() {
    let job = job();
    let dir = interrupted();
    let (id, _) = dir.last_checkpoint().unwrap();
    dir.write("job.toml", &job.replace("'product_view'", "'add_to_cart'"));
    let out = run_with_timeout(dir.loud_job_command(), TIMEOUT).unwrap();
    assert!(out.status.success(), "{}", out.stderr);
    assert!(
        out.stderr.contains(&format!("restored checkpoint {id}")),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains("filter checkouts changed"),
        "{}",
        out.stderr
    );
}
