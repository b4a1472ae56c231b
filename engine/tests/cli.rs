//! The `kflow` command line: exit codes and what `validate`, `plan` and
//! `run` print. (Being an integration test of the `kflow` package, this
//! also makes `cargo test --workspace` build the binary that the
//! end-to-end tests in `tests/` drive.)

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn kflow(args: &[&str], dir: &Path) -> Output {
    match Command::new(env!("CARGO_BIN_EXE_kflow"))
        .args(args)
        .current_dir(dir)
        .output()
    {
        Ok(out) => out,
        Err(e) => panic!("cannot run kflow: {e}"),
    }
}

fn examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../jobs/examples")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn validate_accepts_every_example() {
    for job in ["clickstream.toml", "sliding.toml", "late.toml"] {
        let out = kflow(&["validate", job], &examples());
        assert_eq!(out.status.code(), Some(0), "{job}: {}", text(&out.stderr));
        assert!(text(&out.stdout).contains("ok"), "{}", text(&out.stdout));
    }
}

#[test]
fn validate_reports_errors_with_positions_and_exit_2() {
    let dir = std::env::temp_dir().join(format!("kflow-cli-{}", std::process::id()));
    let _ = std::fs::create_dir_all(&dir);
    let job = "[job]\nname = \"x\"\n\n[sinks.out]\ninput = \"nowhere\"\ntype = \"stdout\"\n";
    let _ = std::fs::write(dir.join("bad.toml"), job);
    let out = kflow(&["validate", "bad.toml"], &dir);
    assert_eq!(out.status.code(), Some(2));
    let stderr = text(&out.stderr);
    assert!(
        stderr.starts_with("bad.toml:5:9: unknown input `nowhere`"),
        "{stderr}"
    );
    assert!(stderr.contains("^^^^^^^^^"), "{stderr}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn plan_prints_the_dag_as_text_and_dot() {
    let out = kflow(&["plan", "sliding.toml"], &examples());
    assert!(out.status.success());
    let plan = text(&out.stdout);
    for expected in [
        "source clicks",
        "filter purchases <- clicks",
        "window recent <- purchases",
        "5 panes of 1m",
        "sink out <- recent",
    ] {
        assert!(plan.contains(expected), "missing {expected:?} in\n{plan}");
    }
    let out = kflow(&["plan", "late.toml", "--format", "dot"], &examples());
    let dot = text(&out.stdout);
    assert!(dot.starts_with("digraph"), "{dot}");
    assert!(dot.contains("label=\"late\""), "{dot}");
}
