//! The Dockerfile language: [`parse`] turns text into build stages of typed instructions, or a
//! [`ParseError`] naming the line. It is a pure function (no file system, no environment) and
//! never panics, whatever the input.
//!
//! Arguments are kept as written (quotes included) wherever Docker expands variables later,
//! at build time, with the environment each instruction sees: expansion is [`crate::expand`]'s.

mod error;
mod instruction;
mod lines;
pub(crate) mod words;

pub use error::ParseError;
pub(crate) use instruction::parse_chmod;

/// A parsed Dockerfile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dockerfile {
    /// The escape character (`\`, or `` ` `` from `# escape=`).
    pub escape: char,
    /// `ARG` instructions before the first `FROM` (usable in `FROM` lines).
    pub meta_args: Vec<Instruction>,
    /// The build stages, in order.
    pub stages: Vec<Stage>,
    /// Lines of blank continuation (Docker warns that they will become errors).
    pub empty_continuations: Vec<usize>,
}

/// A build stage: a `FROM` and what follows it up to the next `FROM`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stage {
    /// Its position, from 0 (what `COPY --from=0` names).
    pub index: usize,
    /// The `FROM` instruction.
    pub from: Instruction,
    /// Its arguments.
    pub from_args: FromArgs,
    /// The instructions after `FROM`.
    pub instructions: Vec<Instruction>,
}

impl Stage {
    /// Its name (`FROM … AS name`, lower-cased).
    pub fn name(&self) -> Option<&str> {
        self.from_args.name.as_deref()
    }
}

/// One instruction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Instruction {
    /// The line it starts on (1-based).
    pub line: usize,
    /// The last line of its text (continuations included, heredoc bodies not).
    pub end_line: usize,
    /// Its text as one line, continuations joined (what `Step N/M :` shows).
    pub text: String,
    /// What it is.
    pub kind: Kind,
}

impl Instruction {
    /// The keyword, upper case.
    pub fn keyword(&self) -> &'static str {
        self.kind.keyword()
    }
}

/// The instructions of Docker's reference, with their arguments as written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    /// `FROM [--platform=P] IMAGE [AS NAME]`.
    From(FromArgs),
    /// `RUN`.
    Run(RunArgs),
    /// `CMD`.
    Cmd(CommandLine),
    /// `ENTRYPOINT`.
    Entrypoint(CommandLine),
    /// `ENV K=V …` (or `ENV K V`).
    Env(Vec<KeyValue>),
    /// `LABEL K=V …`.
    Label(Vec<KeyValue>),
    /// `ARG NAME[=DEFAULT] …`.
    Arg(Vec<ArgDecl>),
    /// `COPY`.
    Copy(CopyArgs),
    /// `ADD`.
    Add(CopyArgs),
    /// `WORKDIR`.
    Workdir(String),
    /// `USER`.
    User(String),
    /// `VOLUME`.
    Volume(Vec<String>),
    /// `EXPOSE`.
    Expose(Vec<String>),
    /// `STOPSIGNAL`.
    StopSignal(String),
    /// `HEALTHCHECK`.
    Healthcheck(Healthcheck),
    /// `SHELL [...]`.
    Shell(Vec<String>),
    /// `ONBUILD INSTRUCTION`: stored, run when the image is used as a base.
    Onbuild {
        /// The trigger's text as it is stored in the image config.
        expression: String,
        /// The trigger, parsed (it must be valid now, as Docker checks).
        trigger: Box<Kind>,
    },
    /// `MAINTAINER`.
    Maintainer(String),
}

impl Kind {
    /// The keyword, upper case.
    pub fn keyword(&self) -> &'static str {
        match self {
            Kind::From(_) => "FROM",
            Kind::Run(_) => "RUN",
            Kind::Cmd(_) => "CMD",
            Kind::Entrypoint(_) => "ENTRYPOINT",
            Kind::Env(_) => "ENV",
            Kind::Label(_) => "LABEL",
            Kind::Arg(_) => "ARG",
            Kind::Copy(_) => "COPY",
            Kind::Add(_) => "ADD",
            Kind::Workdir(_) => "WORKDIR",
            Kind::User(_) => "USER",
            Kind::Volume(_) => "VOLUME",
            Kind::Expose(_) => "EXPOSE",
            Kind::StopSignal(_) => "STOPSIGNAL",
            Kind::Healthcheck(_) => "HEALTHCHECK",
            Kind::Shell(_) => "SHELL",
            Kind::Onbuild { .. } => "ONBUILD",
            Kind::Maintainer(_) => "MAINTAINER",
        }
    }
}

/// `FROM`'s arguments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FromArgs {
    /// The image (`scratch`, a stage name, a reference), variables not yet expanded.
    pub image: String,
    /// `AS name`, lower-cased.
    pub name: Option<String>,
    /// `--platform`.
    pub platform: Option<String>,
}

/// `RUN`'s arguments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunArgs {
    /// The command.
    pub command: CommandLine,
    /// `--network=host|none|default`.
    pub network: Option<String>,
}

/// A command in shell form (`RUN echo hi`: one string for the shell) or exec form
/// (`RUN ["echo", "hi"]`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CommandLine {
    /// The JSON array's items, or the shell command as one string (empty: no command).
    pub args: Vec<String>,
    /// Whether it was a JSON array.
    pub exec_form: bool,
    /// Heredocs named on the line (`RUN <<EOF`), with their bodies.
    pub heredocs: Vec<Heredoc>,
}

/// A heredoc: `<<NAME` on the instruction line, the body on the lines after it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Heredoc {
    /// The terminator word.
    pub name: String,
    /// The body, with its line endings (leading tabs removed for `<<-`).
    pub content: String,
    /// Whether variables in the body are expanded (the name was not quoted).
    pub expand: bool,
    /// `<<-`.
    pub chomp: bool,
    /// The descriptor it feeds (`3<<EOF`), 0 by default.
    pub fd: u32,
}

/// `KEY=VALUE` of ENV and LABEL, both as written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyValue {
    /// The key.
    pub key: String,
    /// The value (quotes still in it).
    pub value: String,
    /// Written `K=V` (not the old `K V`).
    pub delimited: bool,
}

/// One name of an `ARG`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArgDecl {
    /// The name.
    pub name: String,
    /// Its default, as written.
    pub default: Option<String>,
}

/// `COPY` and `ADD` arguments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopyArgs {
    /// Sources as written (heredoc words among them name heredocs).
    pub sources: Vec<String>,
    /// The destination as written.
    pub dest: String,
    /// `--from=STAGE|IMAGE`.
    pub from: Option<String>,
    /// `--chown=USER[:GROUP]`.
    pub chown: Option<String>,
    /// `--chmod=OCTAL`.
    pub chmod: Option<String>,
    /// `--link` (accepted; the result is the same file tree).
    pub link: bool,
    /// Heredocs used as sources.
    pub heredocs: Vec<Heredoc>,
    /// Whether the arguments were a JSON array.
    pub json: bool,
}

/// `HEALTHCHECK`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Healthcheck {
    /// `["NONE"]`, `["CMD", …]` or `["CMD-SHELL", "…"]`.
    pub test: Vec<String>,
    /// `--interval`, in nanoseconds.
    pub interval: Option<i64>,
    /// `--timeout`, in nanoseconds.
    pub timeout: Option<i64>,
    /// `--start-period`, in nanoseconds.
    pub start_period: Option<i64>,
    /// `--start-interval`, in nanoseconds.
    pub start_interval: Option<i64>,
    /// `--retries`.
    pub retries: Option<i64>,
}

/// Parses a Dockerfile. Errors name the line of the offending instruction.
pub fn parse(text: &str) -> Result<Dockerfile, ParseError> {
    let mut lines = lines::Lines::new(text);
    let mut meta_args = Vec::new();
    let mut stages: Vec<Stage> = Vec::new();
    while let Some(logical) = lines.next_instruction()? {
        let ins = instruction::parse_line(&logical, &mut lines)?;
        match &ins.kind {
            Kind::From(f) => {
                if let Some(name) = &f.name
                    && stages.iter().any(|s| s.name() == Some(name))
                {
                    return Err(ParseError::new(
                        ins.line,
                        format!("duplicate stage name \"{name}\""),
                    ));
                }
                stages.push(Stage {
                    index: stages.len(),
                    from_args: f.clone(),
                    from: ins,
                    instructions: Vec::new(),
                });
            }
            Kind::Arg(_) if stages.is_empty() => meta_args.push(ins),
            _ => match stages.last_mut() {
                Some(s) => s.instructions.push(ins),
                None => {
                    return Err(ParseError::new(
                        ins.line,
                        format!(
                            "{} before the first FROM: a Dockerfile starts with FROM (only ARG may come before it)",
                            ins.keyword()
                        ),
                    ));
                }
            },
        }
    }
    if stages.is_empty() {
        return Err(ParseError::new(
            lines.last_line().max(1),
            if meta_args.is_empty() {
                "file with no instructions"
            } else {
                "no FROM instruction: a Dockerfile needs at least one build stage"
            },
        ));
    }
    Ok(Dockerfile {
        escape: lines.escape,
        meta_args,
        stages,
        empty_continuations: lines.empty_continuations,
    })
}

/// Parses one instruction on its own (an ONBUILD trigger read from an image config).
pub fn parse_instruction(text: &str, escape: char) -> Result<Instruction, ParseError> {
    let directive = if escape == '`' { "# escape=`\n" } else { "" };
    let source = format!("{directive}{text}");
    let mut lines = lines::Lines::new(&source);
    let Some(logical) = lines.next_instruction()? else {
        return Err(ParseError::new(1, "empty trigger"));
    };
    let mut ins = instruction::parse_line(&logical, &mut lines)?;
    if lines.next_instruction()?.is_some() {
        return Err(ParseError::new(
            1,
            "onbuild trigger should be a single expression",
        ));
    }
    ins.line = 1;
    Ok(ins)
}

#[cfg(test)]
mod tests;
