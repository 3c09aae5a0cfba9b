//! Image lists (`ferry fetch -f images.txt`, `ferry push -f images.txt`): one reference per
//! line, optionally with its own `--platform`, `#` starting a comment.
//!
//! ```text
//! # base images
//! nginx:1.27
//! redis:7 --platform linux/arm64
//! registry.lan/tools/debug@sha256:0123…   # pinned
//! quay.io/prometheus/node-exporter:v1.8 --platform=all
//! ```

use ferry_oci::{ImageReference, PlatformChoice};

/// One image asked for, with the platforms its line named.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Wanted {
    /// The image.
    pub reference: ImageReference,
    /// The platforms its line asked for; `None` for those of the command line.
    pub platform: Option<PlatformChoice>,
}

/// A line of an image list that could not be read.
#[derive(Debug, thiserror::Error)]
#[error("line {line} of the image list: {reason}")]
pub struct ListError {
    /// 1-based line number.
    pub line: usize,
    /// What is wrong with it.
    pub reason: String,
}

/// Parses an image list.
pub fn parse(text: &str) -> Result<Vec<Wanted>, ListError> {
    let mut out = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let fail = |reason: String| ListError {
            line: i + 1,
            reason,
        };
        let line = raw.split_once('#').map_or(raw, |(before, _)| before);
        let mut words = line.split_whitespace();
        let Some(image) = words.next() else { continue };
        let reference: ImageReference =
            image.parse().map_err(|e| fail(format!("`{image}`: {e}")))?;
        let mut platform = None;
        while let Some(word) = words.next() {
            let value = match word.strip_prefix("--platform") {
                Some("") => words
                    .next()
                    .ok_or_else(|| fail("--platform needs a value".into()))?,
                Some(rest) if rest.starts_with('=') => &rest[1..],
                _ => return Err(fail(format!("unexpected `{word}` after the image"))),
            };
            platform = Some(
                value
                    .parse::<PlatformChoice>()
                    .map_err(|e| fail(e.to_string()))?,
            );
        }
        out.push(Wanted {
            reference,
            platform,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_comments_and_platforms() {
        let list = parse(
            "# base\n\nbusybox\nreg.lan:5000/a/b:1 --platform linux/arm64 # trailing\n  c@sha256:0123456789012345678901234567890123456789012345678901234567890123 --platform=all\n",
        )
        .unwrap();
        assert_eq!(list.len(), 3);
        assert_eq!(
            list[0].reference.to_string(),
            "docker.io/library/busybox:latest"
        );
        assert_eq!(list[0].platform, None);
        assert_eq!(
            list[1].platform,
            Some(PlatformChoice::One("linux/arm64".parse().unwrap()))
        );
        assert_eq!(list[2].platform, Some(PlatformChoice::All));
    }

    #[test]
    fn bad_lines_are_named_by_number() {
        let err = parse("busybox\nnginx --platfrom linux/amd64\n").unwrap_err();
        assert_eq!(err.line, 2);
        let err = parse("busybox\n\nBad Name!\n").unwrap_err();
        assert_eq!(err.line, 3);
        let err = parse("x --platform\n").unwrap_err();
        assert!(err.to_string().contains("needs a value"), "{err}");
    }
}
