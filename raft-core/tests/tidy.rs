//! Architecture invariants of raft-core, checked as ordinary tests: the crate
//! stays pure (no clock, no OS randomness, no threads, no I/O) and its
//! dependency list stays short. Clippy's `disallowed-methods` in
//! raft-core/clippy.toml catches the same calls at lint time; these tests
//! catch them even when clippy is not run.

use std::path::{Path, PathBuf};

fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("src dir is readable") {
        let path = entry.expect("dir entry").path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn no_clock_randomness_threads_or_io_in_the_core() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&root, &mut files);
    assert!(files.len() > 5, "found the sources");
    // The simulator (feature `sim`) is held to the same rules.
    // Assembled at run time so this file does not match itself.
    let banned: Vec<String> = [
        ("Instant", "::now"),
        ("SystemTime", "::now"),
        ("thread", "::spawn"),
        ("thread", "::sleep"),
        ("std::", "fs"),
        ("std::", "net"),
        ("std::", "process"),
        ("tok", "io"),
        ("rand", "::thread_rng"),
        ("getrandom", ""),
        ("Hash", "Map"),
        ("Hash", "Set"),
        ("print", "ln!"),
    ]
    .iter()
    .map(|(a, b)| format!("{a}{b}"))
    .collect();
    let me = Path::new(file!())
        .file_name()
        .expect("file name")
        .to_owned();
    for f in files {
        if f.file_name() == Some(me.as_os_str()) {
            continue;
        }
        let text = std::fs::read_to_string(&f).expect("source is readable");
        for b in &banned {
            assert!(
                !text.contains(b.as_str()),
                "{} uses `{b}`: raft-core must stay deterministic and free of I/O",
                f.display()
            );
        }
    }
}

#[test]
fn dependency_list_stays_short_and_pure() {
    let manifest =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml"))
            .expect("manifest is readable");
    let deps = manifest
        .split("[dependencies]")
        .nth(1)
        .expect("has a [dependencies] table")
        .split("\n[")
        .next()
        .expect("table body");
    let allowed = [
        "serde",
        "postcard",
        "bytes",
        "thiserror",
        "tracing",
        "async-trait",
    ];
    for line in deps
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
    {
        let name = line
            .split(['.', '=', ' '])
            .next()
            .expect("a dependency name");
        assert!(
            allowed.contains(&name),
            "raft-core gained the dependency `{name}`; it must depend only on small pure crates ({allowed:?})"
        );
    }
}
