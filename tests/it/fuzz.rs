//! The fuzz targets' inputs kept in `testdata/fuzz/` (seed corpora and every input that once
//! crashed a target), replayed through the same code the fuzzers run (`fuzz/src/lib.rs`), so
//! what fuzzing found stays fixed without a fuzzer. `scripts/fuzz` runs the fuzzers.

use std::path::PathBuf;
use std::time::Duration;

use crate::harness::workspace;

#[path = "../../fuzz/src/lib.rs"]
#[allow(dead_code)]
mod targets;

fn inputs(target: &str) -> Vec<PathBuf> {
    let dir = workspace().join("testdata/fuzz").join(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
}

/// The seeds of `target` (its kept inputs but the `crash-*` ones).
fn seeds(target: &str) -> Vec<PathBuf> {
    inputs(target)
        .into_iter()
        .filter(|p| {
            !p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("crash-")
        })
        .collect()
}

#[test]
fn every_kept_fuzz_input_replays_without_a_panic() {
    let mut failures = Vec::new();
    let mut count = 0;
    for (target, run) in targets::TARGETS {
        let files = inputs(target);
        assert!(!files.is_empty(), "no seed corpus for fuzz target {target}");
        for file in files {
            let bytes = std::fs::read(&file).unwrap();
            count += 1;
            // In a thread of its own, so that an input that hangs the parser (as fuzzing
            // found one did) fails the test instead of stalling it.
            let (done, finished) = std::sync::mpsc::channel();
            let run = *run;
            std::thread::spawn(move || {
                let outcome = std::panic::catch_unwind(|| run(&bytes));
                let _ = done.send(outcome.is_ok());
            });
            match finished.recv_timeout(Duration::from_secs(20)) {
                Ok(true) => {}
                Ok(false) => failures.push(format!("{}: panicked", file.display())),
                Err(_) => failures.push(format!("{}: still running after 20 s", file.display())),
            }
        }
    }
    assert!(failures.is_empty(), "inputs that still fail: {failures:#?}");
    eprintln!("replayed {count} fuzz inputs");
}

#[test]
fn every_fuzz_target_has_its_corpus_and_its_function() {
    let dir = workspace().join("fuzz/fuzz_targets");
    let mut built: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter_map(|p| Some(p.file_stem()?.to_str()?.to_string()))
        .collect();
    built.sort();
    let mut known: Vec<String> = targets::TARGETS
        .iter()
        .map(|(n, _)| n.to_string())
        .collect();
    known.sort();
    assert_eq!(
        built, known,
        "fuzz/fuzz_targets and fuzz/src/lib.rs disagree"
    );
    let manifest = std::fs::read_to_string(workspace().join("fuzz/Cargo.toml")).unwrap();
    for name in &known {
        assert!(
            manifest.contains(&format!("path = \"fuzz_targets/{name}.rs\"")),
            "fuzz/Cargo.toml lacks the target {name}"
        );
    }
}

/// Seeds only help if they get past the first check: the archive seeds must verify.
#[test]
fn the_archive_seeds_are_accepted_archives() {
    let platform = "linux/amd64".parse().unwrap();
    let mut checked = 0;
    for (target, build) in [
        ("archive", (|b: &[u8]| b.to_vec()) as fn(&[u8]) -> Vec<u8>),
        ("archive_json", targets::archive_json_tar),
    ] {
        for file in seeds(target) {
            let archive = build(&std::fs::read(&file).unwrap());
            let report = ferry_load::verify(&mut &archive[..], &platform, &ferry_load::Silent)
                .unwrap_or_else(|e| panic!("seed {} is refused: {e:?}", file.display()));
            assert!(!report.images.is_empty(), "{}", file.display());
            checked += 1;
        }
    }
    assert!(checked >= 10, "only {checked} archive seeds");
}

/// `${A:-${A:-…}}` nested thousands deep (found past the fuzzer's input length) overflowed
/// the stack: each level of expansion recursed, and `ferry build` died of SIGSEGV. Now the
/// word is refused with an error naming it; a normal nesting still expands.
#[test]
fn deeply_nested_substitutions_are_an_error_not_a_stack_overflow() {
    let nested = |n: usize| format!("{}x{}", "${A:-".repeat(n), "}".repeat(n));
    let deep = nested(5000);
    let dockerfile = format!("FROM a\nENV X={deep}\n");
    // A thread's default stack (2 MiB), as small as any ferry runs on.
    let outcome = std::thread::Builder::new()
        .stack_size(2 << 20)
        .spawn(move || {
            targets::dockerfile(dockerfile.as_bytes());
            let env: Vec<(String, String)> = Vec::new();
            (
                ferry_build::expand::word(&deep, '\\', &env).map_err(|e| e.to_string()),
                ferry_build::expand::word(&nested(8), '\\', &env),
            )
        })
        .unwrap()
        .join()
        .expect("expansion panicked");
    let err = outcome.0.expect_err("5000 nested substitutions expanded");
    assert!(err.contains("nested deeper than"), "{err}");
    assert_eq!(outcome.1.unwrap(), "x");
}

/// The Dockerfile seeds must parse (else the fuzzer starts from the first error), and their
/// `.dockerignore` parts must too.
#[test]
fn the_dockerfile_seeds_parse() {
    let mut checked = 0;
    for file in seeds("dockerfile") {
        let bytes = std::fs::read(&file).unwrap();
        let mut parts = bytes.split(|&b| b == 0);
        let text = std::str::from_utf8(parts.next().unwrap()).unwrap();
        let ignore = std::str::from_utf8(parts.next().unwrap_or_default()).unwrap();
        ferry_build::dockerfile::parse(text)
            .unwrap_or_else(|e| panic!("seed {} is refused: {e:?}", file.display()));
        ferry_build::ignore::Ignore::parse(ignore, &[])
            .unwrap_or_else(|e| panic!("seed {}'s .dockerignore: {e}", file.display()));
        checked += 1;
    }
    assert!(checked >= 10, "only {checked} Dockerfile seeds");
}
