//! Changing a job between runs (issues 3 and 20): which changes resume
//! from the checkpoint and which refuse until `--reset`, and `kflow plan
//! --against` saying so, node by node, before a deploy. Every verdict is
//! checked against what `kflow run` then does from the same checkpoint.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use kflow_benches::jobs::{ClickJob, ClickSource};
use kflow_benches::workload::Workload;
use kflow_tests::job::{JobDir, TIMEOUT};
use kflow_tests::process::run_with_timeout;

/// The clickstream job: `clicks.jsonl`, checkouts per user per minute into
/// `out/result.jsonl`, state in `.kflow/changes`.
fn job() -> String {
    ClickJob::new(
        "changes",
        ClickSource::File {
            path: "clicks.jsonl".into(),
        },
    )
    .toml()
}

fn interrupted() -> JobDir {
    let input = Workload {
        events: 100_000,
        users: 1_000,
        seed: 8,
        ..Workload::default()
    };
    JobDir::interrupted(&job(), &input)
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
        assert!(plan.stdout.contains("checkpoint 2"), "{context}");
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
                run.stderr.contains("restored checkpoint 2"),
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
    dir.write("job.toml", &job.replace("'product_view'", "'add_to_cart'"));
    let out = run_with_timeout(dir.loud_job_command(), TIMEOUT).unwrap();
    assert!(out.status.success(), "{}", out.stderr);
    assert!(
        out.stderr.contains("restored checkpoint 2"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains("filter checkouts changed"),
        "{}",
        out.stderr
    );
}
