//! The parser's one error type: a message and the line it belongs to.

/// Why a Dockerfile does not parse, and where.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {message}")]
pub struct ParseError {
    /// The 1-based line of the instruction (its first line when it spans several).
    pub line: usize,
    /// What is wrong, in Docker's words where Docker has some.
    pub message: String,
}

impl ParseError {
    pub(crate) fn new(line: usize, message: impl Into<String>) -> Self {
        ParseError {
            line,
            message: message.into(),
        }
    }
}
