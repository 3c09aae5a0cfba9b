//! What each fuzz target does with its input.
//!
//! The targets in `fuzz_targets/` are one line each: they call the function of the same name
//! here. `tests/it/fuzz.rs` compiles this file too and replays every input kept in
//! `testdata/fuzz/<target>/` (the seed corpora and every input that once crashed a target)
//! through the same functions, so a crash found by fuzzing stays fixed in the normal test
//! suite.
//!
//! A target fails by panicking. Besides "no panic, no hang, no runaway allocation" (which
//! libFuzzer checks), each target asserts what the parser promises its callers: an accepted
//! archive's images hash to their IDs, a reference prints as text that parses back to the
//! same reference, credentials never show in `Debug` output.

use std::io;

use ferry_oci::{Hasher, ImageReference, Platform};

/// A fuzz target: its name (the directory under `testdata/fuzz/` and the `cargo fuzz` target)
/// and what it runs.
pub type Target = (&'static str, fn(&[u8]));

/// Every target.
pub const TARGETS: &[Target] = &[
    ("tar", tar),
    ("archive", archive),
    ("archive_json", archive_json),
    ("reference", reference),
    ("challenge", challenge),
    ("docker_config", docker_config),
    ("dockerfile", dockerfile),
];

/// The tar reader of `ferry load` (`ferry_load::tar`), entry by entry, reading every entry's
/// data, on raw bytes.
pub fn tar(data: &[u8]) {
    let mut reader = ferry_load::tar::TarReader::new(data);
    let mut data_total = 0u64;
    loop {
        match reader.next_entry() {
            Ok(Some(header)) => {
                assert!(header.size <= ferry_load::tar::MAX_ENTRY_SIZE);
                let announced = reader.remaining();
                match io::copy(&mut reader.data(), &mut io::sink()) {
                    Ok(n) => {
                        assert_eq!(n, announced, "entry data shorter than its header said");
                        data_total += n;
                    }
                    Err(_) => return,
                }
                // Entry data comes out of the input: never more than was put in.
                assert!(data_total <= data.len() as u64);
            }
            Ok(None) => {
                // The end stays the end.
                assert!(matches!(reader.next_entry(), Ok(None)));
                return;
            }
            Err(_) => return,
        }
    }
}

/// `ferry verify` (scan, resolve, layer checks, without a store) on raw bytes: the outer
/// compression, the archive tar, its JSON metadata and its layers.
pub fn archive(data: &[u8]) {
    verify_archive(data);
}

/// `ferry verify` on an archive built from JSON documents, so that the fuzzer works on the
/// manifests, indexes and configs rather than on tar headers.
///
/// The input is documents separated by NUL bytes: the first is `index.json`, the second
/// `manifest.json` (either left out when empty), every later one a blob stored under its
/// digest. A document starting with `layer:` becomes a tar layer with one file per following
/// line. Documents name later documents through placeholders, replaced before hashing:
/// `@N` by `sha256:<hex>` of document N, `$N` by the hex alone, `#N` by its size (N one
/// digit, 2 to 9, greater than the document's own number).
pub fn archive_json(data: &[u8]) {
    verify_archive(&archive_json_tar(data));
}

/// The archive [`archive_json`] builds from its input.
pub fn archive_json_tar(data: &[u8]) -> Vec<u8> {
    let docs: Vec<&[u8]> = data.split(|&b| b == 0).take(10).collect();
    let mut resolved: Vec<Vec<u8>> = vec![Vec::new(); docs.len()];
    let mut facts: Vec<(String, usize)> = vec![(String::new(), 0); docs.len()];
    for i in (0..docs.len()).rev() {
        let text = substitute(docs[i], i, &facts);
        let bytes = match text.strip_prefix(b"layer:") {
            Some(spec) if i >= 2 => layer_tar(spec),
            _ => text,
        };
        facts[i] = (
            ferry_oci::digest::sha256(&bytes).digest().to_string(),
            bytes.len(),
        );
        resolved[i] = bytes;
    }
    let mut archive = tar_builder();
    append(
        &mut archive,
        "oci-layout",
        br#"{"imageLayoutVersion":"1.0.0"}"#,
    );
    for (i, bytes) in resolved.iter().enumerate() {
        let path = match i {
            0 => "index.json".to_string(),
            1 => "manifest.json".to_string(),
            _ => format!("blobs/sha256/{}", facts[i].0),
        };
        if !(i < 2 && bytes.is_empty()) {
            append(&mut archive, &path, bytes);
        }
    }
    archive.into_inner().expect("an in-memory tar")
}

/// Image references as users type them: whatever parses must print (`qualified`, the form
/// ferry writes into archives) as text that parses back to the same reference.
pub fn reference(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(platform) = text.parse::<Platform>() {
        let again: Platform = platform
            .to_string()
            .parse()
            .unwrap_or_else(|e| panic!("platform {platform} does not parse back: {e}"));
        assert_eq!(again, platform);
    }
    let Ok(r) = text.parse::<ImageReference>() else {
        return;
    };
    let printed = r.qualified();
    let again: ImageReference = printed
        .parse()
        .unwrap_or_else(|e| panic!("`{text}` prints as `{printed}`, which does not parse: {e}"));
    assert_eq!(
        again, r,
        "`{text}` prints as `{printed}`, another reference"
    );
    assert!(!r.registry_host().is_empty());
    assert!(!r.repository().is_empty());
    let _ = (
        r.manifest_reference(),
        r.familiar_name(),
        r.familiar_tagged(),
    );
}

/// `WWW-Authenticate` header values (one per line), as a registry's `401` carries them.
pub fn challenge(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let values: Vec<&str> = text.split('\n').collect();
    for c in ferry_fetch::registry::challenge::parse(&values) {
        if let ferry_fetch::registry::challenge::Challenge::Bearer { realm, .. } = c {
            assert!(!realm.is_empty(), "a bearer challenge without a realm");
        }
    }
}

/// Docker's `config.json`: parsed, then asked for the credentials of each registry it names
/// and of Docker Hub. Configurations that name a credential helper are only parsed: asking
/// would run `docker-credential-<name>` programs, and fuzzed names may be real ones.
pub fn docker_config(data: &[u8]) {
    let Ok(config) = serde_json::from_slice::<ferry_fetch::DockerConfig>(data) else {
        return;
    };
    // serde skips unknown fields without checking their strings, so a config can parse while
    // the same bytes are not valid JSON for `Value` (invalid UTF-8 in an unknown field).
    let Ok(value) = serde_json::from_slice::<serde_json::Value>(data) else {
        return;
    };
    let mut secrets = Vec::new();
    let mut names = String::new();
    if let Some(auths) = value.get("auths").and_then(|a| a.as_object()) {
        for (key, entry) in auths {
            names.push_str(key);
            for field in ["auth", "password"] {
                if let Some(s) = entry.get(field).and_then(|s| s.as_str()) {
                    secrets.push(s.to_string());
                }
            }
        }
    }
    for field in ["credHelpers", "credsStore"] {
        if let Some(v) = value.get(field) {
            names.push_str(&v.to_string());
        }
    }
    let shown = format!("{config:?}");
    for s in &secrets {
        assert!(
            s.len() < 8 || !shown.contains(s.as_str()) || names.contains(s.as_str()),
            "a secret shows in {shown}"
        );
    }
    let helpers = value.get("credsStore").is_some_and(|v| !v.is_null())
        || value
            .get("credHelpers")
            .and_then(|v| v.as_object())
            .is_some_and(|m| !m.is_empty());
    if helpers {
        return;
    }
    let mut registries: Vec<String> = vec!["docker.io".into(), "127.0.0.1:5000".into()];
    if let Some(auths) = value.get("auths").and_then(|a| a.as_object()) {
        registries.extend(auths.keys().cloned());
    }
    for registry in &registries {
        let found = config
            .credentials_for(registry)
            .expect("no helper, so no error");
        if let Some(c) = found {
            let password = c.password.expose();
            if password.len() >= 8 && !c.username.contains(password) {
                assert!(
                    !format!("{c:?}").contains(password),
                    "the password shows in {c:?}"
                );
            }
        }
    }
}

/// `ferry build`'s readers of a build context: the Dockerfile parser, the expansion of
/// variables in its arguments, `.dockerignore` patterns and COPY's source wildcards.
///
/// The input is up to three parts separated by NUL bytes: the Dockerfile, a `.dockerignore`,
/// and context paths (one a line) that the ignore rules and COPY sources are matched against.
/// Each stage's arguments are expanded as a build would, in order, with ARG defaults and ENV
/// values added as they come. Checked: instructions lie inside the file and in order; an
/// ONBUILD trigger's stored text parses back to the same trigger (a child build parses it
/// again); expansion leaves text without `$`, quotes or escapes as it is, and splitting into
/// words fails exactly when the single-word form does; the Dockerfile and `.dockerignore`
/// are never ignored; an ignored path without exceptions hides everything below it.
pub fn dockerfile(data: &[u8]) {
    let mut parts = data.splitn(3, |&b| b == 0);
    let text = String::from_utf8_lossy(parts.next().unwrap_or_default());
    let ignore = String::from_utf8_lossy(parts.next().unwrap_or_default());
    let paths = String::from_utf8_lossy(parts.next().unwrap_or_default());
    let paths: Vec<&str> = paths.lines().take(32).collect();
    dockerignore(&ignore, &paths);
    let Ok(df) = ferry_build::dockerfile::parse(&text) else {
        return;
    };
    assert!(
        !df.stages.is_empty(),
        "a Dockerfile accepted without a stage"
    );
    let lines = text.lines().count().max(1);
    let mut last = 0;
    let mut env: Vec<(String, String)> = Vec::new();
    for ins in &df.meta_args {
        check_position(ins, &mut last, lines);
        expand_instruction(&ins.kind, df.escape, &mut env, &paths);
    }
    for (i, stage) in df.stages.iter().enumerate() {
        assert_eq!(stage.index, i);
        check_position(&stage.from, &mut last, lines);
        let mut stage_env = env.clone();
        expand_instruction(&stage.from.kind, df.escape, &mut stage_env, &paths);
        for ins in &stage.instructions {
            check_position(ins, &mut last, lines);
            expand_instruction(&ins.kind, df.escape, &mut stage_env, &paths);
        }
    }
}

/// An instruction starts after the previous one ends and ends inside the file.
fn check_position(ins: &ferry_build::dockerfile::Instruction, last: &mut usize, lines: usize) {
    assert!(
        ins.line > *last && ins.line <= ins.end_line && ins.end_line <= lines,
        "{} at lines {}-{} (previous ended at {last}, the file has {lines})",
        ins.keyword(),
        ins.line,
        ins.end_line
    );
    *last = ins.end_line;
}

/// Expands what a build expands in `kind`, adding ARG and ENV to `env` as a build does.
fn expand_instruction(
    kind: &ferry_build::dockerfile::Kind,
    escape: char,
    env: &mut Vec<(String, String)>,
    paths: &[&str],
) {
    use ferry_build::dockerfile::Kind;
    match kind {
        Kind::From(f) => {
            expand(&f.image, escape, env);
            if let Some(p) = &f.platform {
                expand(p, escape, env);
            }
        }
        Kind::Env(kvs) | Kind::Label(kvs) => {
            for kv in kvs {
                expand(&kv.key, escape, env);
                let value = expand(&kv.value, escape, env).unwrap_or_default();
                if matches!(kind, Kind::Env(_)) {
                    env.push((kv.key.clone(), value));
                }
            }
        }
        Kind::Arg(decls) => {
            for d in decls {
                let value = d
                    .default
                    .as_deref()
                    .and_then(|v| expand(v, escape, env))
                    .unwrap_or_default();
                env.push((d.name.clone(), value));
            }
        }
        Kind::Copy(c) | Kind::Add(c) => {
            expand(&c.dest, escape, env);
            for s in &c.sources {
                if let Some(source) = expand(s, escape, env)
                    && let Ok(p) = ferry_build::glob::Pattern::path(&source)
                {
                    for path in paths {
                        p.matches(path);
                    }
                }
            }
            for h in c.heredocs.iter().filter(|h| h.expand) {
                let _ = ferry_build::expand::word_keeping_quotes(&h.content, escape, env);
            }
        }
        Kind::Workdir(t) | Kind::User(t) | Kind::StopSignal(t) => {
            expand(t, escape, env);
        }
        Kind::Volume(words) | Kind::Expose(words) => {
            for w in words {
                expand(w, escape, env);
            }
        }
        Kind::Onbuild {
            expression,
            trigger,
        } => {
            let again = ferry_build::dockerfile::parse_instruction(expression, escape)
                .unwrap_or_else(|e| {
                    panic!("ONBUILD trigger `{expression}` does not parse back: {e:?}")
                });
            assert_eq!(
                &again.kind, &**trigger,
                "ONBUILD trigger `{expression}` parses back as another instruction"
            );
        }
        Kind::Run(_)
        | Kind::Cmd(_)
        | Kind::Entrypoint(_)
        | Kind::Healthcheck(_)
        | Kind::Shell(_)
        | Kind::Maintainer(_) => {}
    }
}

/// Expands `text` both ways a build does (one word, and split into words).
fn expand(text: &str, escape: char, env: &[(String, String)]) -> Option<String> {
    let env = env.to_vec();
    let one = ferry_build::expand::word(text, escape, &env);
    let many = ferry_build::expand::words(text, escape, &env);
    assert_eq!(
        one.is_ok(),
        many.is_ok(),
        "`{text}` expands as one word but not as words, or the reverse"
    );
    if !text.contains(['$', '\'', '"', escape]) {
        assert_eq!(
            one.as_deref().ok(),
            Some(text),
            "`{text}` changed by expansion"
        );
    }
    one.ok()
}

/// `.dockerignore` rules matched against context paths.
fn dockerignore(text: &str, paths: &[&str]) {
    let kept = ["Dockerfile", ".dockerignore"];
    let Ok(ignore) = ferry_build::ignore::Ignore::parse(text, &kept) else {
        return;
    };
    for k in kept {
        assert!(!ignore.excludes(k), "{k} ignored by `{text}`");
    }
    for path in paths {
        if ignore.excludes(path) && !ignore.has_exceptions() {
            let below = format!("{path}/x");
            assert!(
                ignore.excludes(&below),
                "`{path}` ignored but `{below}` not, without exceptions"
            );
        }
    }
}

/// Runs `ferry verify` on `bytes` and, when it accepts them, checks what it promises: every
/// image's manifest and config hash to their digests, one diff_id per layer.
fn verify_archive(bytes: &[u8]) {
    let platform: Platform = "linux/amd64".parse().expect("a platform");
    let mut input: &[u8] = bytes;
    let Ok(report) = ferry_load::verify(&mut input, &platform, &ferry_load::Silent) else {
        return;
    };
    assert!(
        !report.images.is_empty(),
        "an archive accepted without images"
    );
    for image in &report.images {
        assert_hashes_to(&image.manifest_bytes, &image.manifest.digest);
        assert_hashes_to(&image.config_bytes, &image.config.digest);
        assert_eq!(image.manifest.size, image.manifest_bytes.len() as u64);
        assert_eq!(image.config.size, image.config_bytes.len() as u64);
    }
}

fn assert_hashes_to(bytes: &[u8], digest: &ferry_oci::Digest) {
    let mut h = Hasher::for_digest(digest).expect("a digest ferry accepted");
    h.update(bytes);
    h.verify(digest, Some(bytes.len() as u64))
        .unwrap_or_else(|e| panic!("accepted an image whose {digest} does not hold: {e}"));
}

/// Replaces `@N`, `$N` and `#N` in document `own` by what `facts` says of document N.
fn substitute(doc: &[u8], own: usize, facts: &[(String, usize)]) -> Vec<u8> {
    let mut out = Vec::with_capacity(doc.len());
    let mut i = 0;
    while i < doc.len() {
        let c = doc[i];
        let target = doc
            .get(i + 1)
            .filter(|d| d.is_ascii_digit())
            .map(|d| usize::from(d - b'0'))
            .filter(|&n| n > own && n < facts.len());
        match (c, target) {
            (b'@', Some(n)) => out.extend_from_slice(format!("sha256:{}", facts[n].0).as_bytes()),
            (b'$', Some(n)) => out.extend_from_slice(facts[n].0.as_bytes()),
            (b'#', Some(n)) => out.extend_from_slice(facts[n].1.to_string().as_bytes()),
            _ => {
                out.push(c);
                i += 1;
                continue;
            }
        }
        i += 2;
    }
    out
}

/// A plain tar layer with one small file per line of `spec` (the line is the path and the
/// content).
fn layer_tar(spec: &[u8]) -> Vec<u8> {
    let mut b = tar_builder();
    for line in spec
        .split(|&c| c == b'\n')
        .filter(|l| !l.is_empty())
        .take(16)
    {
        let path = String::from_utf8_lossy(line);
        let mut h = ::tar::Header::new_ustar();
        h.set_size(line.len() as u64);
        h.set_mode(0o644);
        h.set_entry_type(::tar::EntryType::Regular);
        // Paths the tar crate refuses to write (`..`, too long) are left out: the loader's
        // own checks of such paths are fuzzed by the `tar` and `archive` targets.
        if h.set_path(path.as_ref()).is_ok() {
            h.set_cksum();
            let _ = b.append(&h, line);
        }
    }
    b.into_inner().expect("an in-memory tar")
}

fn tar_builder() -> ::tar::Builder<Vec<u8>> {
    ::tar::Builder::new(Vec::new())
}

fn append(b: &mut ::tar::Builder<Vec<u8>>, path: &str, bytes: &[u8]) {
    let mut h = ::tar::Header::new_ustar();
    h.set_size(bytes.len() as u64);
    h.set_mode(0o644);
    h.set_entry_type(::tar::EntryType::Regular);
    h.set_path(path).expect("a short relative path");
    h.set_cksum();
    b.append(&h, bytes).expect("an in-memory tar");
}
