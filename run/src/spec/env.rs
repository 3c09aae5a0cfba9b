//! The container's environment, merged the way Docker merges it.

/// Docker's default `PATH` for Linux containers.
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Replaces the entry with the same key, or appends: a later source wins but an entry keeps its
/// first position, as moby's `ReplaceOrAppendEnvValues` does.
fn set(env: &mut Vec<String>, entry: &str) {
    let key = entry.split_once('=').map_or(entry, |(k, _)| k);
    match env
        .iter_mut()
        .find(|e| e.split_once('=').map_or(e.as_str(), |(k, _)| k) == key)
    {
        Some(e) => *e = entry.to_string(),
        None => env.push(entry.to_string()),
    }
}

/// `PATH` and `HOSTNAME` (and `TERM` with a tty), then the image's `Env`, then the user's
/// `--env-file`/`-e` entries; `HOME` from the passwd entry when nobody set it.
pub fn merge(
    image_env: &[String],
    user_env: &[String],
    hostname: &str,
    tty: bool,
    home: &str,
) -> Vec<String> {
    let mut env = vec![
        format!("PATH={DEFAULT_PATH}"),
        format!("HOSTNAME={hostname}"),
    ];
    if tty {
        env.push("TERM=xterm".into());
    }
    for e in image_env.iter().chain(user_env) {
        set(&mut env, e);
    }
    if !env.iter().any(|e| e.starts_with("HOME=")) {
        env.push(format!("HOME={home}"));
    }
    env
}

/// Reads an `--env-file`: `KEY=VALUE` or bare `KEY` lines, `#` comments and blank lines skipped.
pub fn parse_env_file(text: &str) -> Vec<String> {
    text.lines()
        .map(|l| l.trim_start())
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| l.trim_end_matches('\r').to_string())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn later_sources_win_and_defaults_fill_in() {
        let env = merge(
            &[
                "PATH=/image/bin".into(),
                "GREETING=hello".into(),
                "A=1".into(),
            ],
            &["GREETING=bye".into(), "B=2".into()],
            "abc",
            true,
            "/root",
        );
        assert_eq!(
            env,
            [
                "PATH=/image/bin",
                "HOSTNAME=abc",
                "TERM=xterm",
                "GREETING=bye",
                "A=1",
                "B=2",
                "HOME=/root"
            ]
        );
        let env = merge(&[], &["HOME=/x".into()], "h", false, "/root");
        assert_eq!(
            env,
            [&format!("PATH={DEFAULT_PATH}"), "HOSTNAME=h", "HOME=/x"]
        );
    }

    #[test]
    fn env_files_skip_comments() {
        assert_eq!(
            parse_env_file("# c\nA=1\n\n  B\nC=x y\r\n"),
            ["A=1", "B", "C=x y"]
        );
    }
}
