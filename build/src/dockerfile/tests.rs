use super::*;

fn one(text: &str) -> Kind {
    let d = parse(&format!("FROM scratch\n{text}")).unwrap();
    d.stages[0].instructions[0].kind.clone()
}

fn err(text: &str) -> ParseError {
    parse(text).unwrap_err()
}

#[test]
fn the_seed_dockerfile() {
    let d = parse(
        "FROM centos:7.9.2009\n\nCOPY hello.sh /usr/local/bin\nRUN chmod +x /usr/local/bin/hello.sh\n\nCMD [\"/usr/local/bin/hello.sh\"]\n",
    )
    .unwrap();
    assert_eq!(d.stages.len(), 1);
    let s = &d.stages[0];
    assert_eq!(s.from_args.image, "centos:7.9.2009");
    assert_eq!(s.instructions.len(), 3);
    assert_eq!(s.instructions[0].line, 3);
    assert_eq!(s.instructions[0].text, "COPY hello.sh /usr/local/bin");
    assert_eq!(
        s.instructions[2].kind,
        Kind::Cmd(CommandLine {
            args: vec!["/usr/local/bin/hello.sh".into()],
            exec_form: true,
            heredocs: vec![]
        })
    );
}

#[test]
fn stages_meta_args_and_names() {
    let d =
        parse("ARG V=1\nFROM a:$V AS Build\nRUN x\nFROM build\nCOPY --from=build /a /b\n").unwrap();
    assert_eq!(d.meta_args.len(), 1);
    assert_eq!(d.stages[0].name(), Some("build"));
    assert_eq!(d.stages[1].index, 1);
    assert!(
        err("FROM a AS x\nFROM b AS X\n")
            .message
            .contains("duplicate stage")
    );
    assert!(err("FROM a AS 1x\n").message.contains("invalid name"));
    assert!(err("FROM a b\n").message.contains("one or three"));
}

#[test]
fn errors_name_the_line() {
    let e = err("FROM a\nRUN ok\nFOO bar\n");
    assert_eq!(e.line, 3);
    assert_eq!(e.message, "unknown instruction: FOO");
    let e = err("FROM a\nRNU ok\n");
    assert!(e.message.contains("did you mean RUN"), "{e}");
    assert_eq!(err("RUN x\nFROM a").line, 1);
    assert_eq!(err("").message, "file with no instructions");
    assert_eq!(
        err("# only a comment\n\n").message,
        "file with no instructions"
    );
    let e = err("FROM a\nCOPY x\n");
    assert_eq!(e.line, 2);
    assert!(
        e.message
            .starts_with("COPY requires at least two arguments")
    );
    assert_eq!(err("FROM a\nENV\n").line, 2);
    assert!(err("FROM a\nCMD [1]\n").message.contains("strings only"));
    assert!(err("FROM a\nSHELL sh -c\n").message.contains("JSON form"));
    assert!(
        err("FROM a\nONBUILD ONBUILD RUN x\n")
            .message
            .contains("Chaining")
    );
    assert!(
        err("FROM a\nCOPY --nope x y\n")
            .message
            .contains("unknown flag: --nope")
    );
    assert!(
        err("FROM a\nHEALTHCHECK --interval=1x CMD true\n")
            .message
            .contains("duration")
    );
    assert!(
        err("FROM a\nRUN <<EOF\nnever ends\n")
            .message
            .contains("unterminated heredoc")
    );
}

#[test]
fn continuation_lines_count_from_the_first() {
    let d = parse("FROM a\nRUN a \\\n  && b \\\n  && c\nRUN d\n").unwrap();
    let i = &d.stages[0].instructions;
    assert_eq!((i[0].line, i[0].end_line), (2, 4));
    assert_eq!(i[0].text, "RUN a   && b   && c");
    assert_eq!(i[1].line, 5);
}

#[test]
fn env_and_label_forms() {
    assert_eq!(
        one("ENV A=1 B=\"x y\""),
        Kind::Env(vec![
            KeyValue {
                key: "A".into(),
                value: "1".into(),
                delimited: true
            },
            KeyValue {
                key: "B".into(),
                value: "\"x y\"".into(),
                delimited: true
            },
        ])
    );
    assert_eq!(
        one("ENV PATH /usr/bin:/bin  extra"),
        Kind::Env(vec![KeyValue {
            key: "PATH".into(),
            value: "/usr/bin:/bin  extra".into(),
            delimited: false
        }])
    );
    assert!(
        err("FROM a\nLABEL a=1 b\n")
            .message
            .contains("can't find =")
    );
}

#[test]
fn run_forms_and_heredocs() {
    assert_eq!(
        one("RUN echo \"$HOME\""),
        Kind::Run(RunArgs {
            command: CommandLine {
                args: vec!["echo \"$HOME\"".into()],
                exec_form: false,
                heredocs: vec![]
            },
            network: None
        })
    );
    let d = parse("FROM a\nRUN <<EOF\nset -e\necho hi\nEOF\nCMD x\n").unwrap();
    let i = &d.stages[0].instructions;
    let Kind::Run(r) = &i[0].kind else { panic!() };
    assert_eq!(r.command.heredocs[0].content, "set -e\necho hi\n");
    assert_eq!(i[1].line, 6);
    // JSON form takes no heredoc.
    let d = parse("FROM a\nRUN [\"cat\", \"<<EOF\"]\nCMD x\n").unwrap();
    assert_eq!(d.stages[0].instructions.len(), 2);
}

#[test]
fn copy_flags_and_forms() {
    let Kind::Copy(c) = one("COPY --from=0 --chown=app:app --chmod=640 a b /dst/") else {
        panic!()
    };
    assert_eq!(c.sources, ["a", "b"]);
    assert_eq!(c.dest, "/dst/");
    assert_eq!(c.from.as_deref(), Some("0"));
    assert_eq!(c.chown.as_deref(), Some("app:app"));
    assert_eq!(c.chmod.as_deref(), Some("640"));
    let Kind::Add(c) = one("ADD [\"a b\", \"/c d\"]") else {
        panic!()
    };
    assert_eq!(
        (c.sources[0].as_str(), c.dest.as_str(), c.json),
        ("a b", "/c d", true)
    );
    assert!(
        err("FROM a\nADD --from=x a b\n")
            .message
            .contains("unknown flag")
    );
    assert!(
        err("FROM a\nCOPY --chmod=u+x a b\n")
            .message
            .contains("octal")
    );
    let d = parse("FROM a\nCOPY <<EOF /x\nhello\nEOF\n").unwrap();
    let Kind::Copy(c) = &d.stages[0].instructions[0].kind else {
        panic!()
    };
    assert_eq!(c.heredocs[0].content, "hello\n");
}

#[test]
fn healthcheck_and_onbuild() {
    let Kind::Healthcheck(h) = one("HEALTHCHECK --interval=5s --retries=3 CMD curl -f x") else {
        panic!()
    };
    assert_eq!(h.test, ["CMD-SHELL", "curl -f x"]);
    assert_eq!(h.interval, Some(5_000_000_000));
    assert_eq!(h.retries, Some(3));
    assert_eq!(
        one("HEALTHCHECK NONE"),
        Kind::Healthcheck(Healthcheck {
            test: vec!["NONE".into()],
            ..Default::default()
        })
    );
    let Kind::Onbuild {
        expression,
        trigger,
    } = one("onbuild run echo hi")
    else {
        panic!()
    };
    assert_eq!(expression, "run echo hi");
    assert!(matches!(*trigger, Kind::Run(_)));
}

#[test]
fn escape_directive_and_bom() {
    let d = parse("\u{feff}# escape=`\nFROM a\nRUN echo `\n  hi\n").unwrap();
    assert_eq!(d.escape, '`');
    assert_eq!(d.stages[0].instructions[0].text, "RUN echo   hi");
}

#[test]
fn odd_input_does_not_panic() {
    for text in [
        "FROM",
        "FROM \u{0}",
        "\\",
        "FROM a\nRUN \\",
        "FROM a\nCOPY <<",
        "FROM a\nHEALTHCHECK",
        "FROM a\nHEALTHCHECK CMD",
        "FROM a\nONBUILD",
        "FROM a\nENV \"",
        "FROM a\nLABEL =",
        "FROM a\nARG =x",
        "FROM a\nEXPOSE",
        "FROM a\nRUN 3<<",
        "FROM a\nCOPY --chown a b",
        "FROM a\nRUN ['x']",
        "é\u{301}\n\u{2028}",
        "FROM a\nADD <<\"EOF\" x\n",
    ] {
        let _ = parse(text);
    }
}

/// Pseudo-random text made of what Dockerfiles are made of: no input may panic the parser (a
/// fuzzer will go further; this runs with every test).
#[test]
fn random_text_never_panics() {
    const PIECES: [&str; 40] = [
        "FROM ",
        "RUN ",
        "COPY ",
        "ADD ",
        "ENV ",
        "ARG ",
        "LABEL ",
        "ONBUILD ",
        "HEALTHCHECK ",
        "CMD ",
        "SHELL ",
        "EXPOSE ",
        "WORKDIR ",
        "USER ",
        "VOLUME ",
        "STOPSIGNAL ",
        "--from=",
        "--chmod=",
        "AS ",
        "<<",
        "<<-",
        "EOF",
        "\n",
        "\\\n",
        "`\n",
        "# escape=`\n",
        "#",
        "\"",
        "'",
        "[",
        "]",
        ",",
        "=",
        "$",
        "${",
        "}",
        ":-",
        "é",
        "\t",
        "\u{feff}",
    ];
    let mut seed: u64 = 0x5eed;
    let mut next = || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for _ in 0..4_000 {
        let len = (next() % 24) as usize;
        let text: String = (0..len)
            .map(|_| PIECES[(next() % PIECES.len() as u64) as usize])
            .collect();
        if let Ok(d) = parse(&text) {
            // Whatever parses can also be expanded without panicking.
            for s in &d.stages {
                let _ = crate::expand::word(&s.from_args.image, d.escape, &Vec::new());
            }
        }
        let _ = crate::expand::words(&text, '\\', &Vec::new());
        let _ = crate::ignore::Ignore::parse(&text, &["Dockerfile"]);
        let _ = crate::glob::matches_path(&text, "a/b.txt");
    }
}
