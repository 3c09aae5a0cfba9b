//! Docker's command line, typed as people type it: the seed document's walkthrough with
//! `ferry` for `docker`, `--format`/`--filter` side by side with the Docker engine on the same
//! images and containers, the moby script's directory, `cp`/`export`/`import`, and Docker's
//! argument rules and messages. Images are made here from the host's busybox-static and go
//! into Docker with `ferry save | docker load`, so both sides hold the very same image.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::Value;

use crate::harness::{Ran, Services, ferry, run, tempdir};
use crate::load_support::rand_u64;
use crate::require_services;

const BUSYBOX: &str = "/bin/busybox";
const PATH_ENV: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
const HELLO: &str = "\nHello from Docker!\nThis message shows that your installation appears to be working correctly.\n";

/// A root file system tar: busybox with its applets linked in `/bin`, plus `files`.
fn rootfs_tar(out: &Path, files: &[(&str, &str, u32)]) {
    let mut b = tar::Builder::new(std::fs::File::create(out).unwrap());
    let dir = |b: &mut tar::Builder<std::fs::File>, p: &str| {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Directory);
        h.set_mode(0o755);
        h.set_mtime(1_704_067_200);
        h.set_size(0);
        b.append_data(&mut h, p, std::io::empty()).unwrap();
    };
    for d in ["bin", "etc", "tmp", "usr", "usr/local", "usr/local/bin"] {
        dir(&mut b, d);
    }
    let busybox =
        std::fs::read(BUSYBOX).expect("busybox-static is installed by scripts/services-up");
    let mut h = tar::Header::new_gnu();
    h.set_mode(0o755);
    h.set_mtime(1_704_067_200);
    h.set_size(busybox.len() as u64);
    b.append_data(&mut h, "bin/busybox", busybox.as_slice())
        .unwrap();
    for applet in [
        "sh", "echo", "cat", "ls", "id", "sleep", "mkdir", "ln", "rm", "true", "env",
    ] {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Symlink);
        h.set_mode(0o777);
        h.set_mtime(1_704_067_200);
        h.set_size(0);
        b.append_link(&mut h, format!("bin/{applet}"), "busybox")
            .unwrap();
    }
    let mut h = tar::Header::new_gnu();
    h.set_mode(0o644);
    h.set_mtime(1_704_067_200);
    let passwd = "root:x:0:0:root:/root:/bin/sh\n";
    h.set_size(passwd.len() as u64);
    b.append_data(&mut h, "etc/passwd", passwd.as_bytes())
        .unwrap();
    for (path, text, mode) in files {
        let mut h = tar::Header::new_gnu();
        h.set_mode(*mode);
        h.set_mtime(1_704_067_200);
        h.set_size(text.len() as u64);
        b.append_data(&mut h, path, text.as_bytes()).unwrap();
    }
    b.finish().unwrap();
}

/// `ferry import` of a rootfs tar with `changes`; returns the image ID.
fn import(home: &Path, tar: &Path, name: &str, changes: &[&str]) -> String {
    let mut c = ferry(home);
    c.arg("import");
    for ch in changes {
        c.args(["--change", ch]);
    }
    c.arg(tar).arg(name);
    let r = run(c).ok();
    let id = r.stdout.trim().to_string();
    assert!(id.starts_with("sha256:"), "{}", r.stdout);
    id
}

/// The seed's hello-world: `/hello` prints Docker's greeting.
fn hello_world(home: &Path, name: &str) -> String {
    let tar = home.join("hello-rootfs.tar");
    let script = format!("#!/bin/sh\nprintf '%s' '{HELLO}'\n");
    // busybox has no `bash` applet: a `/bin/bash` that hands over to its `sh`, for the
    // seed's `#!/bin/bash` script.
    rootfs_tar(
        &tar,
        &[
            ("hello", &script, 0o755),
            ("bin/bash", "#!/bin/sh\nexec /bin/sh \"$@\"\n", 0o755),
        ],
    );
    import(
        home,
        &tar,
        name,
        &[
            &format!("ENV {PATH_ENV}"),
            "CMD [\"/hello\"]",
            "LABEL ferry.test=hello",
        ],
    )
}

fn lines(s: &str) -> Vec<&str> {
    s.lines().collect()
}

/// The start of each column of a table line (runs of 3+ spaces end a cell).
fn column_starts(line: &str) -> Vec<usize> {
    let chars: Vec<char> = line.chars().collect();
    let mut starts = vec![0];
    let mut i = 0;
    while i < chars.len() {
        if chars[i] == ' ' {
            let run = chars[i..].iter().take_while(|c| **c == ' ').count();
            if run >= 3 && i + run < chars.len() {
                starts.push(i + run);
            }
            i += run;
        } else {
            i += 1;
        }
    }
    starts
}

#[test]
fn the_seed_walkthrough_runs_with_ferry_for_docker() {
    let s = require_services!();
    let home = tempdir();
    let h = home.path();
    hello_world(h, "hello-world:latest");

    // $ docker container run hello-world
    let r = run(ferry(h).args(["container", "run", "hello-world"])).ok();
    assert_eq!(r.stdout, HELLO);

    // $ docker container ls -a: Docker's columns, the row under its headings.
    let r = run(ferry(h).args(["container", "ls", "-a"])).ok();
    let out = lines(&r.stdout);
    assert_eq!(out.len(), 2, "{}", r.stdout);
    let header: Vec<&str> = out[0]
        .split("   ")
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .collect();
    assert_eq!(
        header,
        [
            "CONTAINER ID",
            "IMAGE",
            "COMMAND",
            "CREATED",
            "STATUS",
            "PORTS",
            "NAMES"
        ]
    );
    let cells: Vec<&str> = out[1]
        .split("   ")
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .collect();
    assert_eq!(cells[1], "hello-world");
    assert_eq!(cells[2], "\"/hello\"");
    assert!(cells[3].ends_with(" ago"), "{}", out[1]);
    assert!(
        cells[4].starts_with("Exited (0) ") && cells[4].ends_with(" ago"),
        "{}",
        out[1]
    );
    let name = *cells.last().unwrap();
    // Every cell starts under its heading (the empty PORTS cell makes the row one short).
    let (hs, rs) = (column_starts(out[0]), column_starts(out[1]));
    assert_eq!(&hs[..5], &rs[..5], "{}", r.stdout);
    assert_eq!(hs[6], *rs.last().unwrap(), "{}", r.stdout);

    // $ docker container stop NAME; docker container rm NAME: each prints the name.
    let r = run(ferry(h).args(["container", "stop", name])).ok();
    assert_eq!(r.stdout.trim(), name);
    let r = run(ferry(h).args(["container", "rm", name])).ok();
    assert_eq!(r.stdout.trim(), name);
    let r = run(ferry(h).args(["container", "ls", "-a", "-q"])).ok();
    assert_eq!(r.stdout, "");

    // $ docker image ls
    let r = run(ferry(h).args(["image", "ls"])).ok();
    let out = lines(&r.stdout);
    assert_eq!(
        out[0]
            .split("   ")
            .map(str::trim)
            .filter(|c| !c.is_empty())
            .collect::<Vec<_>>(),
        ["REPOSITORY", "TAG", "IMAGE ID", "CREATED", "SIZE"]
    );
    assert!(
        out[1].starts_with("hello-world   latest    "),
        "{}",
        r.stdout
    );
    assert!(out[1].trim_end().ends_with("MB"), "{}", r.stdout);

    // $ docker image inspect hello-world:latest: RepoTags, Env, Cmd.
    let r = run(ferry(h).args(["image", "inspect", "hello-world:latest"])).ok();
    let v: Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(v[0]["RepoTags"], serde_json::json!(["hello-world:latest"]));
    assert_eq!(v[0]["Config"]["Env"], serde_json::json!([PATH_ENV]));
    assert_eq!(v[0]["Config"]["Cmd"], serde_json::json!(["/hello"]));
    assert!(
        r.stdout.contains("\n    {\n        \"Id\": \"sha256:"),
        "four-space indentation: {}",
        r.stdout
    );

    // The coffee break: $ ./download-frozen-image-v2.sh ./httpd httpd:alpine
    let image = s.image("ferry/multilayer:oci");
    let r = run(ferry(h).current_dir(h).args([
        "download-frozen-image-v2",
        "--progress",
        "none",
        "--insecure-registry",
        s.registry(),
        "./httpd",
        &image,
    ]))
    .ok();
    assert_eq!(
        r.stdout,
        "Download of images into './httpd' complete.\n\
         Use something like the following to load the result into a Docker daemon:\n  \
         tar -cC './httpd' . | docker load\n"
    );
    // $ cd ./httpd; tar cf httpd.tar *
    run(Command::new("sh")
        .current_dir(h.join("httpd"))
        .args(["-c", "tar cf httpd.tar *"]))
    .ok();
    // $ docker image load -i httpd.tar
    let r = run(ferry(h)
        .args(["image", "load", "-i"])
        .arg(h.join("httpd/httpd.tar")))
    .ok();
    assert_eq!(r.stdout, format!("Loaded image: {image}\n"));
    let r = run(ferry(h).args(["image", "ls", "--format", "{{.Repository}}:{{.Tag}}"])).ok();
    assert!(r.stdout.lines().any(|l| l == image), "{}", r.stdout);

    // The last chapter: a hello.sh image, then `docker container run my-hello:0.0`.
    let ctx = h.join("ctx");
    std::fs::create_dir_all(&ctx).unwrap();
    std::fs::write(ctx.join("hello.sh"), "#!/bin/bash\necho \"Hello World!\"\n").unwrap();
    let has_build = run(ferry(h).args(["image", "build", "--help"])).code == Some(0);
    if has_build {
        std::fs::write(
            ctx.join("Dockerfile"),
            "FROM hello-world:latest\nCOPY hello.sh /usr/local/bin\nRUN chmod +x /usr/local/bin/hello.sh\nCMD [\"/usr/local/bin/hello.sh\"]\n",
        )
        .unwrap();
        run(ferry(h)
            .args(["image", "build", "-t", "my-hello:0.0"])
            .arg(&ctx))
        .ok();
    } else {
        // `ferry build` is not in this binary yet: the same image through cp, export, import.
        eprintln!(
            "NOTE: `ferry image build` is not available here; making my-hello:0.0 with cp/export/import"
        );
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(ctx.join("hello.sh"), std::fs::Permissions::from_mode(0o755))
            .unwrap();
        run(ferry(h).args(["run", "--name", "maker", "hello-world", "true"])).ok();
        run(ferry(h)
            .arg("cp")
            .arg(ctx.join("hello.sh"))
            .arg("maker:/usr/local/bin"))
        .ok();
        let exported = h.join("maker.tar");
        run(ferry(h)
            .args(["container", "export", "maker", "-o"])
            .arg(&exported))
        .ok();
        import(
            h,
            &exported,
            "my-hello:0.0",
            &[
                &format!("ENV {PATH_ENV}"),
                "CMD [\"/usr/local/bin/hello.sh\"]",
            ],
        );
    }
    let r = run(ferry(h).args(["image", "ls", "--filter", "reference=my-hello"])).ok();
    assert!(
        r.stdout
            .lines()
            .nth(1)
            .is_some_and(|l| l.starts_with("my-hello     0.0       ")),
        "{}",
        r.stdout
    );
    let r = run(ferry(h).args(["container", "run", "my-hello:0.0"])).ok();
    assert_eq!(r.stdout, "Hello World!\n");
}

/// Names unique to one test run in the shared Docker engine, removed at the end.
struct DockerSide<'a> {
    s: &'a Services,
    images: Vec<String>,
    containers: Vec<String>,
}

impl Drop for DockerSide<'_> {
    fn drop(&mut self) {
        // Containers first: an image a container uses cannot be removed.
        for (verb, names) in [("rm", &self.containers), ("rmi", &self.images)] {
            if !names.is_empty() {
                let _ = self
                    .s
                    .docker()
                    .args([verb, "-f"])
                    .args(names)
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status();
            }
        }
    }
}

/// Runs the same arguments with `docker` and with `ferry`; returns both results.
fn both(s: &Services, home: &Path, args: &[&str]) -> (Ran, Ran) {
    (run(s.docker().args(args)), run(ferry(home).args(args)))
}

#[track_caller]
fn same(s: &Services, home: &Path, args: &[&str]) {
    let (d, f) = both(s, home, args);
    let d = d.ok();
    let f = f.ok();
    assert_eq!(
        f.stdout, d.stdout,
        "ferry and docker differ for {args:?}\nferry stderr: {}",
        f.stderr
    );
}

#[test]
fn format_and_filter_give_what_docker_gives_on_the_same_state() {
    let s = require_services!();
    let home = tempdir();
    let h = home.path();
    let tag = format!("ferry-cli-{:x}", rand_u64());
    let a = format!("{tag}/alpha:1");
    let b = format!("{tag}/beta:2");
    let mut docker = DockerSide {
        s,
        images: vec![a.clone(), b.clone()],
        containers: vec![],
    };
    let tar = h.join("rootfs.tar");
    rootfs_tar(&tar, &[("etc/motd", "alpha\n", 0o644)]);
    import(
        h,
        &tar,
        &a,
        &[
            &format!("ENV {PATH_ENV}"),
            "ENV GREETING=\"hello there\"",
            "CMD [\"sh\", \"-c\", \"exit 3\"]",
            "LABEL ferry.test=yes other=1",
            "WORKDIR /tmp",
        ],
    );
    // Imported a second later: before/since have an order to go by.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    rootfs_tar(&tar, &[("etc/motd", "beta\n", 0o644)]);
    import(
        h,
        &tar,
        &b,
        &[
            &format!("ENV {PATH_ENV}"),
            "CMD [\"true\"]",
            "LABEL ferry.test=no",
        ],
    );
    let saved = h.join("both.tar");
    run(ferry(h).args(["save", "-o"]).arg(&saved).args([&a, &b])).ok();
    run(s.docker().arg("load").arg("-i").arg(&saved)).ok();

    let reference = format!("reference={tag}/*");
    for fmt in [
        "{{.Repository}}:{{.Tag}}",
        "{{.ID}}",
        "table {{.Repository}}\\t{{.Tag}}\\t{{.ID}}",
        "{{.Repository}} {{.Size}} {{.VirtualSize}}",
        "{{json .Repository}} {{upper .Tag}} {{title .Repository}} {{printf \"%.5s|%-6s|\" .ID .Tag}}",
        "{{if eq .Tag \"1\"}}first{{else}}other{{end}} {{len .Tag}} {{split .Repository \"/\"}} {{join (split .Repository \"/\") \"+\"}}",
    ] {
        same(s, h, &["images", "--filter", &reference, "--format", fmt]);
    }
    for filter in [
        "label=ferry.test",
        "label=ferry.test=yes",
        "label=other=1",
        "dangling=false",
        &format!("before={b}"),
        &format!("since={a}"),
    ] {
        same(
            s,
            h,
            &[
                "images",
                "--filter",
                &reference,
                "--filter",
                filter,
                "--format",
                "{{.Repository}}:{{.Tag}}",
            ],
        );
    }
    same(s, h, &["images", "-q", "--filter", &reference]);
    // How long ago, on an image made long before this test (the registry's, 2024): a
    // just-made one may cross a second between the two commands.
    let old = crate::run::install(s, h, "ferry/busybox:docker");
    crate::load_support::docker_has(s, "ferry/busybox:docker");
    same(
        s,
        h,
        &[
            "images",
            "--filter",
            &format!("reference={old}"),
            "--format",
            "{{.CreatedSince}} {{.CreatedAt}} {{.Size}} {{.ID}}",
        ],
    );
    same(
        s,
        h,
        &[
            "history",
            "--format",
            "{{.CreatedSince}} {{.Size}} {{.CreatedBy}}",
            &old,
        ],
    );
    // (Sizes in bytes are not compared: Docker counts symlink targets in a layer's size, the
    // store counts regular files only, 0.1 % less on busybox.)
    same(
        s,
        h,
        &[
            "history",
            "--human=false",
            "--format",
            "{{.CreatedSince}} {{.CreatedAt}}",
            &old,
        ],
    );
    same(
        s,
        h,
        &[
            "images",
            &format!("{tag}/alpha"),
            "--format",
            "{{.Repository}}:{{.Tag}}",
        ],
    );

    // inspect -f over the image's config.
    for fmt in [
        "{{.Id}}",
        "{{json .Config.Env}}",
        "{{.Config.Cmd}}",
        "{{index .RepoTags 0}}",
        "{{range .Config.Env}}{{println .}}{{end}}",
        "{{.Os}}/{{.Architecture}} {{.Config.WorkingDir}}",
        "{{json .Config.Labels}} {{index .Config.Labels \"ferry.test\"}}|{{index .Config.Labels \"none\"}}|",
        "{{len .RootFS.Layers}} {{.RootFS.Type}}",
    ] {
        same(s, h, &["image", "inspect", "-f", fmt, &a]);
        same(s, h, &["inspect", "--type", "image", "--format", fmt, &a]);
    }
    for fmt in [
        "{{.ID}} {{.CreatedBy}}|{{.Comment}}",
        "table {{.ID}}\\t{{.Comment}}",
        "{{.Size}}",
    ] {
        same(s, h, &["history", "--format", fmt, &a]);
    }

    // Containers of the same images, with the same names.
    let c1 = format!("{tag}-c1");
    let c2 = format!("{tag}-c2");
    docker.containers = vec![c1.clone(), c2.clone()];
    for (name, img) in [(&c1, &a), (&c2, &b)] {
        let d = run(s
            .docker()
            .args(["run", "--network", "none", "--name", name, img]));
        let f = run(ferry(h).args(["run", "--name", name, img]));
        assert_eq!(d.code, f.code, "{}", f.stderr);
    }
    let name = format!("name={tag}");
    for fmt in [
        "{{.Names}} {{.Image}} {{.Command}} {{.State}}",
        "table {{.Names}}\\t{{.Image}}\\t{{.Command}}",
        "{{json .Names}} {{.Ports}}|{{.Mounts}}|",
    ] {
        same(s, h, &["ps", "-a", "--filter", &name, "--format", fmt]);
    }
    // Docker joins a container's labels in Go's map order, which changes from run to run:
    // the same labels, in any order.
    let (d, f) = both(
        s,
        h,
        &["ps", "-a", "--filter", &name, "--format", "{{.Labels}}"],
    );
    let sorted = |out: &str| -> Vec<Vec<String>> {
        out.lines()
            .map(|l| {
                let mut v: Vec<String> = l.split(',').map(str::to_string).collect();
                v.sort();
                v
            })
            .collect()
    };
    assert_eq!(
        sorted(&f.ok().stdout),
        sorted(&d.ok().stdout),
        "{{{{.Labels}}}}"
    );
    for filter in [
        "status=exited",
        "exited=3",
        "exited=0",
        &format!("ancestor={a}"),
        "label=ferry.test=yes",
        &format!("name={tag}-c2"),
        &format!("before={c2}"),
        &format!("since={c1}"),
    ] {
        same(
            s,
            h,
            &[
                "ps",
                "-a",
                "--filter",
                &name,
                "--filter",
                filter,
                "--format",
                "{{.Names}}",
            ],
        );
    }
    // A status filter shows stopped containers without -a.
    same(
        s,
        h,
        &[
            "ps",
            "--filter",
            &name,
            "--filter",
            "status=exited",
            "--format",
            "{{.Names}}",
        ],
    );
    for fmt in [
        "{{.State.Status}} {{.State.ExitCode}} {{.State.Running}} {{.Name}}",
        "{{.Config.Image}} {{json .Config.Cmd}} {{.Path}} {{json .Args}}",
        "{{index .Config.Labels \"ferry.test\"}} {{json .Config.Env}} {{.Config.WorkingDir}}",
        "{{.Image}}",
    ] {
        same(s, h, &["inspect", "-f", fmt, &c1]);
        same(s, h, &["container", "inspect", "--format", fmt, &c1]);
    }

    // Bad input: both refuse; ferry in one line that names what is wrong.
    let (d, f) = both(s, h, &["ps", "-a", "--format", "{{.Nope}}"]);
    d.failed();
    let f = f.failed();
    assert!(
        f.stderr
            .starts_with("error: template: container has no field `Nope`"),
        "{}",
        f.stderr
    );
    assert_eq!(f.stderr.lines().count(), 1, "{}", f.stderr);
    let (d, f) = both(s, h, &["images", "--filter", "colour=red"]);
    d.assert_stderr("Invalid filter 'colour'");
    let f = f.failed();
    assert!(
        f.stderr.starts_with("error: invalid filter 'colour'"),
        "{}",
        f.stderr
    );
    let (d, f) = both(s, h, &["ps", "--filter", "status=sleepy"]);
    d.failed();
    f.failed().assert_stderr("invalid filter 'status=sleepy'");
    let (d, f) = both(s, h, &["image", "inspect", "-f", "{{.Config.Nope}}", &a]);
    d.failed();
    f.failed().assert_stderr("has no field `Nope`");
}

#[test]
fn options_end_at_the_image_and_bad_values_get_dockers_words() {
    let s = require_services!();
    let home = tempdir();
    let h = home.path();
    let tag = format!("ferry-cli-{:x}", rand_u64());
    let img = format!("{tag}/args:1");
    let made = format!("{tag}-made");
    let _docker = DockerSide {
        s,
        images: vec![img.clone()],
        containers: vec![made.clone()],
    };
    let tar = h.join("rootfs.tar");
    rootfs_tar(&tar, &[]);
    import(h, &tar, &img, &[&format!("ENV {PATH_ENV}"), "CMD [\"sh\"]"]);
    let saved = h.join("args.tar");
    run(ferry(h).args(["save", "-o"]).arg(&saved).arg(&img)).ok();
    run(s.docker().arg("load").arg("-i").arg(&saved)).ok();
    for tail in [
        &["--entrypoint", "echo", img.as_str(), "-e", "A=1"][..],
        &["--entrypoint", "echo", img.as_str(), "--rm", "x"],
        &["--entrypoint", "id", img.as_str(), "-u"],
        &[img.as_str(), "sh", "-c", "echo $0 $1", "--name", "-v"],
        &[img.as_str(), "--", "echo", "after dashes"],
    ] {
        let mut args = vec!["run", "--rm", "--network", "none"];
        args.extend_from_slice(tail);
        let d = run(s.docker().args(&args));
        let mut fargs = vec!["run", "--rm"];
        fargs.extend_from_slice(tail);
        let f = run(ferry(h).args(&fargs));
        assert_eq!(
            (f.code, &f.stdout),
            (d.code, &d.stdout),
            "{tail:?}\nferry: {}\ndocker: {}",
            f.stderr,
            d.stderr
        );
    }
    // `container create` makes it, `start -a` runs it: as Docker's.
    let d = run(s.docker().args([
        "container",
        "create",
        "--network",
        "none",
        "--name",
        &made,
        &img,
        "sh",
        "-c",
        "echo made; exit 4",
    ]))
    .ok();
    let f = run(ferry(h).args([
        "container",
        "create",
        "--name",
        &made,
        &img,
        "sh",
        "-c",
        "echo made; exit 4",
    ]))
    .ok();
    assert_eq!((d.stdout.trim().len(), f.stdout.trim().len()), (64, 64));
    same(
        s,
        h,
        &[
            "ps",
            "-a",
            "--filter",
            &format!("name={made}"),
            "--format",
            "{{.Status}} {{.State}} {{.Command}}",
        ],
    );
    let (d, f) = both(s, h, &["start", "-a", &made]);
    assert_eq!((f.code, &f.stdout), (d.code, &d.stdout), "{}", f.stderr);
    assert_eq!(f.stdout, "made\n");
    assert_eq!(f.code, Some(4));

    // `-e =foo`: refused with Docker's words and code.
    let d = run(s.docker().args([
        "run",
        "--rm",
        "--network",
        "none",
        "-e",
        "=foo",
        &img,
        "true",
    ]));
    let f = run(ferry(h).args(["run", "--rm", "-e", "=foo", &img, "true"]));
    assert_eq!(f.code, d.code);
    d.assert_stderr("invalid environment variable: =foo");
    assert_eq!(f.stderr, "error: invalid environment variable: =foo\n");

    // exec: everything after the container is the command's.
    run(ferry(h).args(["run", "-d", "--name", "long", &img, "sleep", "30"])).ok();
    let r = run(ferry(h).args(["exec", "long", "echo", "-e", "-u", "x"])).ok();
    assert_eq!(r.stdout, "-u x\n");
    let r = run(ferry(h).args([
        "container",
        "exec",
        "-e",
        "V=1",
        "long",
        "sh",
        "-c",
        "echo $V",
    ]))
    .ok();
    assert_eq!(r.stdout, "1\n");
    // (Docker gives 126 for any exec that cannot start, "not found" too.)
    let r = run(ferry(h).args(["exec", "long", "no-such-command"]));
    assert_eq!(r.code, Some(126), "{}", r.stderr);
    assert!(
        r.stderr.starts_with("error: cannot exec in container "),
        "{}",
        r.stderr
    );
    run(ferry(h).args(["kill", "long"])).ok();

    // An unknown user: Docker's words on the first line.
    let r = run(ferry(h).args(["run", "--rm", "-u", "nobody-here", &img, "id"]));
    assert_eq!(r.code, Some(125));
    assert!(
        r.stderr.starts_with(
            "error: unable to find user nobody-here: no matching entries in passwd file"
        ),
        "{}",
        r.stderr
    );
    // logs of a container that ran in the foreground: what happened, and what to do.
    run(ferry(h).args(["run", "--name", "fg", &img, "true"])).ok();
    let r = run(ferry(h).args(["logs", "fg"])).failed();
    assert!(
        r.stderr.contains("has no logs")
            && r.stderr.contains("hint: only containers started with -d"),
        "{}",
        r.stderr
    );
    assert!(!r.stderr.contains("is not supported"), "{}", r.stderr);
}

/// `tar -cC DIR . | docker load`: the moby script's last step.
pub fn docker_load_dir(s: &Services, dir: &Path) -> Ran {
    let mut tar = Command::new("tar")
        .arg("-cC")
        .arg(dir)
        .arg(".")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let loaded = run(s.docker().arg("load").stdin(tar.stdout.take().unwrap())).ok();
    assert!(tar.wait().unwrap().success());
    loaded
}

/// Every file below `dir`, relative, with its content (`None` for directories).
fn tree(dir: &Path) -> BTreeSet<(PathBuf, Option<Vec<u8>>)> {
    let mut out = BTreeSet::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            let rel = p.strip_prefix(dir).unwrap().to_path_buf();
            if p.is_dir() {
                out.insert((rel, None));
                stack.push(p);
            } else {
                out.insert((rel, Some(std::fs::read(&p).unwrap())));
            }
        }
    }
    out
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}

#[test]
fn fetch_dir_writes_the_moby_scripts_directory_for_docker_and_ferry() {
    let s = require_services!();
    let home = tempdir();
    let h = home.path();
    let repo_tag = "ferry/multilayer:docker";
    let image = s.image(repo_tag);
    let dir = h.join("frozen");
    run(crate::harness::fetch_from(h, s.registry())
        .args([&image, "--dir"])
        .arg(&dir))
    .ok();
    assert!(!h.join("frozen.part").exists() && !h.join("frozen.part.json").exists());

    // The layout, computed here the way the script computes it.
    let manifest: Value =
        serde_json::from_slice(&std::fs::read(dir.join("manifest.json")).unwrap()).unwrap();
    let entry = &manifest[0];
    assert_eq!(entry["RepoTags"], serde_json::json!([image]));
    let config_file = entry["Config"].as_str().unwrap();
    let config = std::fs::read(dir.join(config_file)).unwrap();
    assert_eq!(
        config_file,
        format!("{}.json", sha256_hex(&config)),
        "the config as served"
    );
    let config: Value = serde_json::from_slice(&config).unwrap();
    let mut parent = String::new();
    let layers = entry["Layers"].as_array().unwrap();
    let diff_ids = config["rootfs"]["diff_ids"].as_array().unwrap();
    assert_eq!(layers.len(), diff_ids.len());
    for (i, l) in layers.iter().enumerate() {
        let path = l.as_str().unwrap();
        let blob = std::fs::read(dir.join(path)).unwrap();
        // The blob as served (gzip), its digest the manifest's.
        assert_eq!(&blob[..2], b"\x1f\x8b", "{path} is the compressed blob");
        let digest = format!("sha256:{}", sha256_hex(&blob));
        let id = sha256_hex(format!("{parent}\n{digest}\n").as_bytes());
        assert_eq!(path, format!("{id}/layer.tar"));
        assert_eq!(
            std::fs::read_to_string(dir.join(&id).join("VERSION")).unwrap(),
            "1.0\n"
        );
        let json: Value =
            serde_json::from_slice(&std::fs::read(dir.join(&id).join("json")).unwrap()).unwrap();
        assert_eq!(json["id"], id.as_str());
        if parent.is_empty() {
            assert!(json.get("parent").is_none());
        } else {
            assert_eq!(json["parent"], parent.as_str());
        }
        if i + 1 == layers.len() {
            assert_eq!(
                json["config"], config["config"],
                "the top layer carries the config"
            );
            assert!(json.get("rootfs").is_none() && json.get("history").is_none());
        } else {
            assert_eq!(json["created"], "0001-01-01T00:00:00Z");
        }
        parent = id;
    }
    let (name, tag) = image.rsplit_once(':').unwrap();
    assert_eq!(
        std::fs::read_to_string(dir.join("repositories")).unwrap(),
        format!("{{\n\t\"{name}\": {{ \"{tag}\": \"{parent}\" }}\n}}\n")
    );

    // `tar -cC DIR . | docker load`, then `docker run`.
    let loaded = docker_load_dir(s, &dir);
    assert!(
        loaded.stdout.contains(&format!("Loaded image: {image}")),
        "{}",
        loaded.stdout
    );
    let expect = s.expected_stdout(repo_tag);
    let out = run(s
        .docker()
        .args(["run", "--rm", "--network", "none", &image]))
    .ok();
    assert_eq!(out.stdout.trim_end(), expect);

    // `ferry load -i DIR`, then `ferry run`.
    let r = run(ferry(h).args(["load", "-q", "-i"]).arg(&dir)).ok();
    assert_eq!(r.stdout, format!("Loaded image: {image}\n"));
    let out = run(ferry(h).args(["run", "--rm", &image])).ok();
    assert_eq!(out.stdout.trim_end(), expect);

    // The script's own arguments give the same directory and its closing hint.
    let again = h.join("again");
    let r = run(ferry(h)
        .args([
            "download-frozen-image-v2",
            "--progress",
            "none",
            "--insecure-registry",
            s.registry(),
        ])
        .arg(&again)
        .arg(&image))
    .ok();
    assert!(
        r.stdout.ends_with(&format!(
            "  tar -cC '{}' . | docker load\n",
            again.display()
        )),
        "{}",
        r.stdout
    );
    assert_eq!(tree(&again), tree(&dir));
}

/// A container whose file system is full of links that point out of it.
fn trap(h: &Path, img: &str, name: &str, outside: &Path, detach: bool) {
    let script = format!(
        "mkdir -p /data && echo inside > /data/f && ln -s / /data/hostroot && ln -s {o} /data/out && ln -s ../../../../../../.. /data/up && mkdir -p {o} && echo decoy > {o}/secret{sleep}",
        o = outside.display(),
        sleep = if detach { " && sleep 60" } else { "" }
    );
    let mut c = ferry(h);
    c.args(["run", "--name", name]);
    if detach {
        c.arg("-d");
    }
    run(c.args([img, "sh", "-c", &script])).ok();
    if detach {
        // Until the script has made its links.
        for _ in 0..100 {
            if run(ferry(h).args(["exec", name, "test", "-e", "/data/up"])).code == Some(0) {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }
}

#[test]
fn cp_copies_both_ways_and_never_writes_outside_the_container_through_its_links() {
    let s = require_services!();
    let _ = s;
    let home = tempdir();
    let h = home.path();
    let tar = h.join("rootfs.tar");
    rootfs_tar(&tar, &[("etc/motd", "from the image\n", 0o644)]);
    import(
        h,
        &tar,
        "cpimg:1",
        &[&format!("ENV {PATH_ENV}"), "CMD [\"sh\"]"],
    );
    let outside = h.join("outside");
    std::fs::create_dir_all(&outside).unwrap();
    std::fs::write(outside.join("secret"), "host secret\n").unwrap();
    let payload = h.join("payload");
    std::fs::write(&payload, "payload\n").unwrap();

    for (name, detach) in [("stopped", false), ("running", true)] {
        trap(h, "cpimg:1", name, &outside, detach);
        for dest in ["/data/hostroot", "/data/out", "/data/up"] {
            let target = if dest == "/data/out" {
                format!("{name}:{dest}/pwned")
            } else {
                format!("{name}:{dest}{}/pwned", outside.display())
            };
            run(ferry(h).arg("cp").arg(&payload).arg(&target)).ok();
            assert!(
                !outside.join("pwned").exists(),
                "{target} wrote to the host"
            );
            // It landed where the link points inside the container.
            let r = run(ferry(h)
                .arg("cp")
                .arg(format!("{name}:{}/pwned", outside.display()))
                .arg("-"))
            .ok();
            assert!(!r.stdout.is_empty());
            run(ferry(h).args(["exec", name, "true"]));
        }
        // Copies PATH of the container out to a new place on the host.
        let copy_out = |path: &str, to: &str| {
            let out = h.join(format!("{name}-{to}"));
            run(ferry(h).arg("cp").arg(format!("{name}:{path}")).arg(&out)).ok();
            out
        };
        // Reading through the links reads the container's files, not the host's.
        let out = copy_out("/data/out/secret", "secret");
        assert_eq!(std::fs::read_to_string(&out).unwrap(), "decoy\n");
        let out = copy_out("/data/hostroot/etc/motd", "motd");
        assert_eq!(std::fs::read_to_string(&out).unwrap(), "from the image\n");
        // A directory out, with its links kept as links.
        let dir_out = copy_out("/data", "data");
        assert_eq!(
            std::fs::read_to_string(dir_out.join("f")).unwrap(),
            "inside\n"
        );
        assert_eq!(
            std::fs::read_link(dir_out.join("hostroot")).unwrap(),
            Path::new("/")
        );
        // A directory in; `SRC/.` copies its content.
        let d = h.join("tree");
        std::fs::create_dir_all(d.join("sub")).unwrap();
        std::fs::write(d.join("sub/x"), "x\n").unwrap();
        run(ferry(h).arg("cp").arg(&d).arg(format!("{name}:/tmp"))).ok();
        run(ferry(h)
            .arg("cp")
            .arg(format!("{}/.", d.display()))
            .arg(format!("{name}:/etc")))
        .ok();
        for p in ["/tmp/tree/sub/x", "/etc/sub/x"] {
            let back = h.join("back");
            run(ferry(h).arg("cp").arg(format!("{name}:{p}")).arg(&back)).ok();
            assert_eq!(std::fs::read_to_string(&back).unwrap(), "x\n", "{p}");
            std::fs::remove_file(&back).unwrap();
        }
        let r = run(ferry(h)
            .arg("cp")
            .arg(&payload)
            .arg(format!("{name}:/no/such/dir/")))
        .failed();
        assert!(
            r.stderr.starts_with("error: no such directory"),
            "{}",
            r.stderr
        );
        let r = run(ferry(h).arg("cp").arg(format!("{name}:/nope")).arg(h)).failed();
        assert_eq!(
            r.stderr,
            format!("error: no such container:path: {name}:/nope\n")
        );
    }
    assert_eq!(
        std::fs::read_to_string(outside.join("secret")).unwrap(),
        "host secret\n"
    );
    assert_eq!(std::fs::read_dir(&outside).unwrap().count(), 1);
    run(ferry(h).args(["rm", "-f", "running"])).ok();
}

#[test]
fn export_gives_the_file_system_docker_exports_and_import_makes_it_an_image_again() {
    let s = require_services!();
    let home = tempdir();
    let h = home.path();
    let tag = format!("ferry-cli-{:x}", rand_u64());
    let img = format!("{tag}/exp:1");
    let c = format!("{tag}-exp");
    let _docker = DockerSide {
        s,
        images: vec![img.clone(), format!("{tag}/back:1")],
        containers: vec![c.clone()],
    };
    let tar = h.join("rootfs.tar");
    rootfs_tar(
        &tar,
        &[("etc/motd", "motd\n", 0o644), ("etc/gone", "x\n", 0o600)],
    );
    import(h, &tar, &img, &[&format!("ENV {PATH_ENV}")]);
    let saved = h.join("exp.tar");
    run(ferry(h).args(["save", "-o"]).arg(&saved).arg(&img)).ok();
    run(s.docker().arg("load").arg("-i").arg(&saved)).ok();
    let script = "rm /etc/gone && mkdir -p /srv/a && echo new > /srv/a/f && ln -s f /srv/a/l && chmod 700 /srv/a";
    run(s.docker().args([
        "run",
        "--network",
        "none",
        "--name",
        &c,
        &img,
        "sh",
        "-c",
        script,
    ]))
    .ok();
    run(ferry(h).args(["run", "--name", &c, &img, "sh", "-c", script])).ok();
    let d_out = h.join("docker-export.tar");
    let f_out = h.join("ferry-export.tar");
    run(s.docker().args(["export", "-o"]).arg(&d_out).arg(&c)).ok();
    run(ferry(h)
        .args(["container", "export", "-o"])
        .arg(&f_out)
        .arg(&c))
    .ok();
    // Same entries, types, modes, link targets and contents; Docker adds its mount points.
    let entries = |p: &Path| -> BTreeSet<(String, u8, String, String)> {
        crate::load_support::read_tar(p)
            .into_iter()
            .filter(|(n, _, _, _)| {
                !matches!(
                    n.trim_end_matches('/'),
                    ".dockerenv"
                        | "etc/hosts"
                        | "etc/hostname"
                        | "etc/resolv.conf"
                        | "dev"
                        | "proc"
                        | "sys"
                        | "etc/mtab"
                ) && !n.starts_with("dev/")
                    && !n.starts_with("proc/")
                    && !n.starts_with("sys/")
            })
            .map(|(n, kind, link, data)| {
                (
                    n.trim_end_matches('/').to_string(),
                    kind,
                    link,
                    sha256_hex(&data),
                )
            })
            .collect()
    };
    assert_eq!(entries(&f_out), entries(&d_out));
    // Modes too.
    let modes = |p: &Path| -> Vec<(String, u32)> {
        let mut ar = tar::Archive::new(std::fs::File::open(p).unwrap());
        let mut v: Vec<(String, u32)> = ar
            .entries()
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                (
                    e.path()
                        .unwrap()
                        .to_string_lossy()
                        .trim_end_matches('/')
                        .to_string(),
                    e.header().mode().unwrap(),
                )
            })
            .filter(|(n, _)| {
                n.starts_with("srv") || n.starts_with("etc/motd") || n.starts_with("bin/busybox")
            })
            .collect();
        v.sort();
        v
    };
    assert_eq!(modes(&f_out), modes(&d_out));

    // The export back as an image, in ferry and in Docker.
    let back = format!("{tag}/back:1");
    import(
        h,
        &f_out,
        &back,
        &[&format!("ENV {PATH_ENV}"), "CMD [\"cat\", \"/srv/a/l\"]"],
    );
    let r = run(ferry(h).args(["run", "--rm", &back])).ok();
    assert_eq!(r.stdout, "new\n");
    let r = run(ferry(h).args(["run", "--rm", &back, "ls", "/etc/gone"]));
    assert_ne!(r.code, Some(0), "a deleted file came back");
    let r = run(s
        .docker()
        .args(["import", "--change", "CMD [\"cat\", \"/srv/a/l\"]"])
        .arg(&f_out)
        .arg(&back))
    .ok();
    assert!(r.stdout.starts_with("sha256:"));
    let r = run(s.docker().args(["run", "--rm", "--network", "none", &back])).ok();
    assert_eq!(r.stdout, "new\n");
    // Bad input: not a tar.
    let r = run(ferry(h)
        .args(["import"])
        .arg(h.join("rootfs.tar").with_extension("nope"))
        .arg("x:1"))
    .failed();
    assert!(r.stderr.starts_with("error: cannot open"), "{}", r.stderr);
    std::fs::write(h.join("text"), "just text, no tar\n").unwrap();
    let r = run(ferry(h).args(["import"]).arg(h.join("text")).arg("x:1")).failed();
    assert!(r.stderr.contains("is not a tar archive"), "{}", r.stderr);
    let r = run(ferry(h)
        .args(["import", "--change", "RUN rm -rf /"])
        .arg(&f_out)
        .arg("x:1"))
    .failed();
    assert!(r.stderr.contains("RUN cannot be applied"), "{}", r.stderr);
}

#[test]
fn completions_and_man_pages_come_from_the_command_definitions() {
    let home = tempdir();
    let h = home.path();
    for shell in ["bash", "zsh", "fish", "powershell"] {
        let r = run(ferry(h).args(["completion", shell])).ok();
        // Management commands and their flags are in every script.
        for word in ["container", "download-frozen-image-v2", "filter", "format"] {
            assert!(r.stdout.contains(word), "{shell} lacks {word}");
        }
    }
    let bash = run(ferry(h).args(["completion", "bash"])).ok().stdout;
    let script = h.join("ferry.bash");
    std::fs::write(&script, bash).unwrap();
    let r = run(Command::new("bash").arg("-c").arg(format!(
        "source {}\nCOMP_WORDS=(ferry container l); COMP_CWORD=2; _ferry ferry l container; echo \"${{COMPREPLY[*]}}\"",
        script.display()
    )))
    .ok();
    assert_eq!(r.stdout.trim(), "logs ls list");
    let man = h.join("man");
    run(ferry(h).arg("man-pages").arg(&man)).ok();
    let page = std::fs::read_to_string(man.join("ferry-container-ls.1")).unwrap();
    assert!(
        page.contains("\\-\\-filter") && page.contains("List containers"),
        "{page}"
    );
    assert!(man.join("ferry-image-inspect.1").exists() && man.join("ferry-fetch.1").exists());
}
