//! Services: published ports through ferry's user-space proxy, `--network none|container:`,
//! restart policies, start/restart/wait, and the same cases against Docker where this
//! engine can run them (it runs with `--bridge=none`, so its containers publish ports only on
//! a network the test creates). These tests run as root.

use std::io::{Read, Write};
use std::net::{TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::harness::{Ran, Services, ferry, run};
use crate::require_services;
use crate::run::install;

/// A test's store; every container left in it is removed at the end, so a failing test
/// leaves no service running.
struct Home(tempfile::TempDir);

impl Home {
    fn path(&self) -> &Path {
        self.0.path()
    }
}

impl Drop for Home {
    fn drop(&mut self) {
        let ids = run(ferry(self.path()).args(["ps", "-aq"])).stdout;
        let ids: Vec<&str> = ids.split_whitespace().collect();
        if !ids.is_empty() {
            let _ = ferry(self.path())
                .args(["rm", "-f", "-v"])
                .args(&ids)
                .output();
        }
    }
}

fn tempdir() -> Home {
    Home(crate::harness::tempdir())
}

/// `ferry ARGS…` in `home`.
fn f(home: &Path, args: &[&str]) -> Ran {
    run(ferry(home).args(args))
}

/// Asserts that a run was refused as Docker refuses one: exit status 125, `message` on stderr.
#[track_caller]
fn refused(r: Ran, message: &str) {
    assert_eq!(r.code, Some(125), "{r:?}");
    r.assert_stderr(message);
}

/// Polls `f` for up to `secs` seconds.
fn wait_until<T>(secs: u64, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A port nobody listens on right now.
fn free_port() -> u16 {
    std::net::TcpListener::bind("0.0.0.0:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `GET path` on 127.0.0.1:port with HTTP/1.0; the body, or `None` when nothing answered.
fn http_get(port: u16, path: &str) -> Option<String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\n\r\n").ok()?;
    let mut resp = String::new();
    s.read_to_string(&mut resp).ok()?;
    let (_, body) = resp.split_once("\r\n\r\n")?;
    Some(body.to_string())
}

/// Waits until the server behind `port` answers.
fn http_ready(port: u16) -> String {
    wait_until(15, "the published server", || {
        http_get(port, "/").filter(|b| !b.is_empty())
    })
}

/// A busybox httpd serving `index.html` = `body` on container port 80.
fn httpd_script(body: &str) -> String {
    format!("mkdir -p /www && echo {body} > /www/index.html && exec httpd -f -p 80 -h /www")
}

/// `ferry run -d --name NAME FLAGS… IMG` of a busybox httpd answering `body` on port 80.
fn serve(home: &Path, img: &str, name: &str, flags: &[&str], body: &str) {
    let script = httpd_script(body);
    let mut args = vec!["run", "-d", "--name", name];
    args.extend_from_slice(flags);
    args.extend_from_slice(&[img, "sh", "-c", &script]);
    f(home, &args).ok();
}

/// [`serve`] with container port 80 published on a free host port, once it answers there;
/// returns the port.
fn serve_on_free_port(home: &Path, img: &str, name: &str, flags: &[&str], body: &str) -> u16 {
    let port = free_port();
    let publish = format!("{port}:80");
    let mut flags = flags.to_vec();
    flags.extend(["-p", &publish]);
    serve(home, img, name, &flags, body);
    assert_eq!(http_ready(port), format!("{body}\n"));
    port
}

/// `ferry container inspect NAME` (or `docker inspect`), the first document.
fn inspect(cmd: Command, name: &str) -> Value {
    let mut cmd = cmd;
    let out = run(cmd.arg("inspect").arg(name)).ok();
    let v: Value = serde_json::from_str(&out.stdout).expect("inspect JSON");
    v[0].clone()
}

fn ferry_inspect(home: &Path, name: &str) -> Value {
    let mut c = ferry(home);
    c.arg("container");
    inspect(c, name)
}

/// A Docker network for one test: this engine publishes ports only on user-defined networks.
struct DockerNet<'a> {
    s: &'a Services,
    name: String,
    containers: Vec<String>,
}

impl<'a> DockerNet<'a> {
    fn new(s: &'a Services, test: &str) -> Self {
        let name = format!("ferry-it-{test}-{}", std::process::id());
        run(s.docker().args(["network", "create", &name])).ok();
        run(s
            .docker()
            .args(["pull", "-q", &s.image("ferry/busybox:oci")]))
        .ok();
        DockerNet {
            s,
            name,
            containers: Vec::new(),
        }
    }

    /// `docker run -d --name NAME --network THIS ARGS…`.
    fn run_d(&mut self, name: &str, args: &[&str]) -> Ran {
        let full = format!("{}-{name}", self.name);
        self.containers.push(full.clone());
        run(self
            .s
            .docker()
            .args(["run", "-d", "--name", &full, "--network", &self.name])
            .args(args))
    }

    fn docker(&self) -> Command {
        self.s.docker()
    }
}

impl Drop for DockerNet<'_> {
    fn drop(&mut self) {
        for c in &self.containers {
            let _ = self.s.docker().args(["rm", "-f", "-v", c]).output();
        }
        let _ = self.s.docker().args(["network", "rm", &self.name]).output();
    }
}

/// The host port published for `container/tcp` per `ferry port`/`docker port`'s first line.
fn published_port(lines: &str) -> u16 {
    lines
        .lines()
        .next()
        .and_then(|l| l.rsplit(':').next())
        .and_then(|p| p.trim().parse().ok())
        .unwrap_or_else(|| panic!("no published port in {lines:?}"))
}

#[test]
fn services_loopback_is_up_with_network_none_like_docker() {
    let s = require_services!();
    let home = tempdir();
    let img = install(s, home.path(), "ferry/busybox:oci");
    // A service talking to itself over localhost: ping, and an HTTP server and client.
    let script = "ip -o link show lo | grep -q 'UP' && echo lo-up; \
        ping -c1 -W2 127.0.0.1 >/dev/null && echo ping-ok; \
        mkdir /www && echo self > /www/index.html && (httpd -p 127.0.0.1:8080 -h /www) && \
        sleep 0.3 && wget -qO- http://127.0.0.1:8080/";
    let ours = f(
        home.path(),
        &["run", "--rm", "--network", "none", &img, "sh", "-c", script],
    )
    .ok();
    assert_eq!(ours.stdout, "lo-up\nping-ok\nself\n");
    let docker =
        run(s
            .docker()
            .args(["run", "--rm", "--network", "none", &img, "sh", "-c", script]))
        .ok();
    assert_eq!(ours.stdout, docker.stdout);
    // Still only `lo` there.
    let r = f(
        home.path(),
        &[
            "run",
            "--rm",
            "--network",
            "none",
            &img,
            "ls",
            "/sys/class/net",
        ],
    )
    .ok();
    assert_eq!(r.stdout, "lo\n");
}

#[test]
fn services_published_port_answers_like_docker() {
    let s = require_services!();
    let home = tempdir();
    let img = install(s, home.path(), "ferry/busybox:oci");
    let mut net = DockerNet::new(s, "publish");
    let (ours, theirs) = (free_port(), free_port());
    let script = httpd_script("hello-from-httpd");
    let r = f(
        home.path(),
        &[
            "run",
            "-d",
            "--name",
            "web",
            "-p",
            &format!("{ours}:80"),
            &img,
            "sh",
            "-c",
            &script,
        ],
    )
    .ok();
    assert_eq!(r.stdout.trim().len(), 64);
    net.run_d(
        "web",
        &["-p", &format!("{theirs}:80"), &img, "sh", "-c", &script],
    )
    .ok();
    assert_eq!(http_ready(ours), "hello-from-httpd\n");
    assert_eq!(http_ready(theirs), http_ready(ours));
    // The container itself sees the server on its own loopback.
    let inside = f(
        home.path(),
        &["exec", "web", "wget", "-qO-", "http://127.0.0.1:80/"],
    )
    .ok();
    assert_eq!(inside.stdout, "hello-from-httpd\n");
    // `port` and ps's PORTS as Docker prints them (only the port numbers differ).
    let port = f(home.path(), &["port", "web"]).ok();
    let dport = run(net.docker().args(["port", &format!("{}-web", net.name)])).ok();
    assert_eq!(
        port.stdout.replace(&ours.to_string(), "P"),
        dport.stdout.replace(&theirs.to_string(), "P")
    );
    assert_eq!(
        port.stdout,
        format!("80/tcp -> 0.0.0.0:{ours}\n80/tcp -> :::{ours}\n")
    );
    let one = f(home.path(), &["port", "web", "80/tcp"]).ok();
    assert_eq!(one.stdout, format!("0.0.0.0:{ours}\n:::{ours}\n"));
    let ps = f(home.path(), &["ps"]).ok();
    let dps = run(net.docker().args([
        "ps",
        "--filter",
        &format!("name={}-web", net.name),
        "--format",
        "{{.Ports}}",
    ]))
    .ok();
    let expect = dps
        .stdout
        .trim()
        .replace(&theirs.to_string(), &ours.to_string());
    assert!(ps.stdout.contains("PORTS"), "{}", ps.stdout);
    assert!(
        ps.stdout.contains(&expect),
        "ps lacks {expect:?}:\n{}",
        ps.stdout
    );
    // Inspect names the binding as Docker does.
    let doc = ferry_inspect(home.path(), "web");
    assert_eq!(
        doc["NetworkSettings"]["Ports"]["80/tcp"][0]["HostPort"],
        ours.to_string()
    );
    assert_eq!(
        doc["HostConfig"]["PortBindings"]["80/tcp"][0]["HostPort"],
        ours.to_string()
    );

    // -P publishes the exposed ports on free host ports; localhost-only bindings stay local.
    f(
        home.path(),
        &[
            "run", "-d", "--name", "all", "--expose", "80", "-P", &img, "sh", "-c", &script,
        ],
    )
    .ok();
    let all = published_port(&f(home.path(), &["port", "all", "80"]).ok().stdout);
    assert_ne!(all, 0);
    assert_eq!(http_ready(all), "hello-from-httpd\n");
    f(
        home.path(),
        &[
            "run",
            "-d",
            "--name",
            "local",
            "-p",
            "127.0.0.1::80",
            &img,
            "sh",
            "-c",
            &script,
        ],
    )
    .ok();
    let local = f(home.path(), &["port", "local"]).ok();
    assert!(
        local.stdout.starts_with("80/tcp -> 127.0.0.1:") && local.stdout.lines().count() == 1,
        "{}",
        local.stdout
    );
    assert_eq!(
        http_ready(published_port(&local.stdout)),
        "hello-from-httpd\n"
    );
    f(home.path(), &["rm", "-f", "web", "all", "local"]).ok();
}

#[test]
fn services_same_container_port_twice_taken_ports_and_stop_frees_the_port() {
    let s = require_services!();
    let home = tempdir();
    let img = install(s, home.path(), "ferry/busybox:oci");
    let a = serve_on_free_port(home.path(), &img, "a", &[], "server-a");
    let b = serve_on_free_port(home.path(), &img, "b", &[], "server-b");

    // A port another container holds, and one another program holds: Docker's messages.
    let mut net = DockerNet::new(s, "taken");
    let theirs = free_port();
    net.run_d(
        "first",
        &["-p", &format!("{theirs}:80"), &img, "sleep", "60"],
    )
    .ok();
    let docker_taken = run(net.docker().args([
        "run",
        "--rm",
        "--network",
        &net.name,
        "-p",
        &format!("{theirs}:80"),
        &img,
        "true",
    ]));
    let ours = f(
        home.path(),
        &["run", "--rm", "-p", &format!("{a}:80"), &img, "true"],
    );
    assert_eq!(ours.code, Some(125));
    assert_eq!(docker_taken.code, Some(125));
    let allocated =
        |port: u16| format!("Bind for 0.0.0.0:{port} failed: port is already allocated");
    ours.assert_stderr(&allocated(a));
    docker_taken.assert_stderr(&allocated(theirs));
    let held = std::net::TcpListener::bind("0.0.0.0:0").unwrap();
    let hp = held.local_addr().unwrap().port();
    let in_use = format!(
        "Error starting userland proxy: listen tcp4 0.0.0.0:{hp}: bind: address already in use"
    );
    let ours = f(
        home.path(),
        &["run", "-d", "-p", &format!("{hp}:80"), &img, "true"],
    );
    refused(ours, &in_use);
    let theirs_in_use = run(net.docker().args([
        "run",
        "--rm",
        "--network",
        &net.name,
        "-p",
        &format!("{hp}:80"),
        &img,
        "true",
    ]));
    refused(theirs_in_use, &in_use);
    drop(held);
    // Failed starts leave nothing behind.
    let ps = f(home.path(), &["ps", "-a", "-q"]).ok();
    assert_eq!(ps.stdout.lines().count(), 2, "{}", ps.stdout);

    // Stopping a container frees its port at once: the host can bind it, another container
    // can publish it.
    f(home.path(), &["stop", "-t", "1", "a"]).ok();
    assert!(http_get(a, "/").is_none_or(|b| b.is_empty()));
    drop(std::net::TcpListener::bind(("0.0.0.0", a)).expect("port freed by stop"));
    serve(
        home.path(),
        &img,
        "c",
        &["-p", &format!("{a}:80")],
        "server-c",
    );
    assert_eq!(http_ready(a), "server-c\n");
    assert_eq!(http_get(b, "/").as_deref(), Some("server-b\n"));
    // A restart of the stopped one now finds its port taken, in Docker's words.
    let r = f(home.path(), &["start", "a"]);
    assert_eq!(r.code, Some(125), "{r:?}");
    r.assert_stderr(&allocated(a));
    f(home.path(), &["rm", "-f", "a", "b", "c"]).ok();
}

/// Compiles the UDP echo fixture statically, for a busybox container.
fn udp_echo_binary(dir: &Path) -> PathBuf {
    let src = crate::harness::workspace().join("testdata/services/udp-echo.c");
    let out = dir.join("udp-echo");
    let r = run(Command::new("gcc")
        .args(["-static", "-O2", "-o"])
        .arg(&out)
        .arg(&src));
    r.ok();
    out
}

fn udp_round_trip(port: u16, payload: &str) -> Option<String> {
    let sock = UdpSocket::bind("127.0.0.1:0").ok()?;
    sock.set_read_timeout(Some(Duration::from_millis(500)))
        .ok()?;
    sock.send_to(payload.as_bytes(), ("127.0.0.1", port)).ok()?;
    let mut buf = [0u8; 2048];
    let n = sock.recv(&mut buf).ok()?;
    Some(String::from_utf8_lossy(&buf[..n]).into_owned())
}

#[test]
fn services_udp_echo_through_the_proxy_like_docker() {
    let s = require_services!();
    let home = tempdir();
    let img = install(s, home.path(), "ferry/busybox:oci");
    let bin = udp_echo_binary(home.path());
    let mount = format!("{}:/udp-echo:ro", bin.display());
    f(
        home.path(),
        &[
            "run",
            "-d",
            "--name",
            "echo",
            "-v",
            &mount,
            "-p",
            "9000/udp",
            &img,
            "/udp-echo",
            "9000",
        ],
    )
    .ok();
    let port = f(home.path(), &["port", "echo"]).ok();
    assert!(
        port.stdout.starts_with("9000/udp -> 0.0.0.0:"),
        "{}",
        port.stdout
    );
    let ours = published_port(&port.stdout);
    let mut net = DockerNet::new(s, "udp");
    net.run_d(
        "echo",
        &["-v", &mount, "-p", "9000/udp", &img, "/udp-echo", "9000"],
    )
    .ok();
    let dport = run(net.docker().args(["port", &format!("{}-echo", net.name)])).ok();
    let theirs = published_port(&dport.stdout);
    for port in [ours, theirs] {
        let first = wait_until(15, "the UDP echo server", || udp_round_trip(port, "ping"));
        assert_eq!(first, "echo:ping");
    }
    // Several clients at once, each answered on its own flow.
    let clients: Vec<UdpSocket> = (0..5)
        .map(|_| UdpSocket::bind("127.0.0.1:0").unwrap())
        .collect();
    for (i, c) in clients.iter().enumerate() {
        c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        c.send_to(format!("client-{i}").as_bytes(), ("127.0.0.1", ours))
            .unwrap();
    }
    for (i, c) in clients.iter().enumerate() {
        let mut buf = [0u8; 64];
        let n = c.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], format!("echo:client-{i}").as_bytes());
    }
    f(home.path(), &["rm", "-f", "echo"]).ok();
    // The port is free again.
    drop(UdpSocket::bind(("0.0.0.0", ours)).expect("UDP port freed"));
}

/// Descriptors the proxy process holds.
fn fd_count(pid: i64) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count())
}

fn proxy_pid(home: &Path, name: &str) -> i64 {
    let id = ferry_inspect(home, name)["Id"]
        .as_str()
        .unwrap()
        .to_string();
    let state: Value = serde_json::from_slice(
        &std::fs::read(home.join("store/containers").join(id).join("state.json")).unwrap(),
    )
    .unwrap();
    state["proxy_pid"].as_i64().unwrap()
}

#[test]
fn services_proxy_survives_a_thousand_connections_and_clients_that_vanish() {
    let s = require_services!();
    let home = tempdir();
    let img = install(s, home.path(), "ferry/busybox:oci");
    let port = free_port();
    let script = "mkdir -p /www && echo small > /www/index.html && \
        dd if=/dev/zero of=/www/big bs=1M count=64 2>/dev/null && exec httpd -f -p 80 -h /www";
    f(
        home.path(),
        &[
            "run",
            "-d",
            "--name",
            "web",
            "-p",
            &format!("127.0.0.1:{port}:80"),
            &img,
            "sh",
            "-c",
            script,
        ],
    )
    .ok();
    assert_eq!(http_ready(port), "small\n");
    let proxy = proxy_pid(home.path(), "web");
    assert!(proxy > 0);
    // The readiness check's connection closes when the proxy sees the client's FIN.
    std::thread::sleep(Duration::from_millis(500));
    let idle = fd_count(proxy);
    for i in 0..1000 {
        assert_eq!(
            http_get(port, "/").as_deref(),
            Some("small\n"),
            "connection {i}"
        );
    }
    // Clients that read a little of a 64 MiB answer and vanish: some close, some reset.
    for i in 0..20 {
        let mut c = TcpStream::connect(("127.0.0.1", port)).unwrap();
        c.write_all(b"GET /big HTTP/1.0\r\n\r\n").unwrap();
        let mut buf = [0u8; 65536];
        c.read_exact(&mut buf).unwrap();
        if i % 2 == 0 {
            let linger = libc::linger {
                l_onoff: 1,
                l_linger: 0,
            };
            // SAFETY: sets SO_LINGER on our own socket so that close sends RST.
            unsafe {
                libc::setsockopt(
                    std::os::fd::AsRawFd::as_raw_fd(&c),
                    libc::SOL_SOCKET,
                    libc::SO_LINGER,
                    (&linger as *const libc::linger).cast(),
                    std::mem::size_of::<libc::linger>() as libc::socklen_t,
                )
            };
        }
        drop(c);
    }
    // A whole large answer still arrives intact.
    let mut c = TcpStream::connect(("127.0.0.1", port)).unwrap();
    c.write_all(b"GET /big HTTP/1.0\r\n\r\n").unwrap();
    let mut all = Vec::new();
    c.read_to_end(&mut all).unwrap();
    drop(c);
    let body = all.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    assert_eq!(all.len() - body, 64 << 20);
    assert!(all[body..].iter().all(|b| *b == 0));
    // Same proxy, nothing leaked.
    assert_eq!(proxy_pid(home.path(), "web"), proxy);
    wait_until(10, "the proxy to close finished connections", || {
        (fd_count(proxy) <= idle).then_some(())
    });
    assert_eq!(http_get(port, "/").as_deref(), Some("small\n"));
    f(home.path(), &["rm", "-f", "web"]).ok();
    // The proxy ends with its container.
    wait_until(10, "the proxy to exit", || {
        (!Path::new(&format!("/proc/{proxy}")).exists()).then_some(())
    });
}

#[test]
fn services_network_container_shares_the_namespace_like_docker() {
    let s = require_services!();
    let home = tempdir();
    let img = install(s, home.path(), "ferry/busybox:oci");
    let port = serve_on_free_port(home.path(), &img, "main", &[], "main-server");
    // A sidecar sees the main container's loopback and its hostname.
    let r = f(
        home.path(),
        &[
            "run",
            "--rm",
            "--network",
            "container:main",
            &img,
            "sh",
            "-c",
            "wget -qO- http://127.0.0.1:80/; hostname",
        ],
    )
    .ok();
    let main_id = ferry_inspect(home.path(), "main")["Id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(r.stdout, format!("main-server\n{}\n", &main_id[..12]));
    // Ports are published by the container that owns the namespace: Docker refuses them on a
    // joined one, and so does ferry.
    let conflict = "conflicting options: port publishing and the container type network mode";
    let ours = f(
        home.path(),
        &[
            "run",
            "--rm",
            "--network",
            "container:main",
            "-p",
            "81:81",
            &img,
            "true",
        ],
    );
    refused(ours, conflict);
    let theirs = run(s.docker().args([
        "run",
        "--rm",
        "--network",
        "container:nonexistent-ferry",
        "-p",
        "81:81",
        &img,
        "true",
    ]));
    refused(theirs, conflict);
    // A detached sidecar, restarted after the main container was: it joins the namespace the
    // main container has now, not the one it had.
    f(
        home.path(),
        &[
            "run",
            "-d",
            "--name",
            "side",
            "--network",
            "container:main",
            &img,
            "sleep",
            "60",
        ],
    )
    .ok();
    f(home.path(), &["restart", "-t", "1", "main"]).ok();
    assert_eq!(http_ready(port), "main-server\n");
    f(home.path(), &["restart", "-t", "1", "side"]).ok();
    let r = f(
        home.path(),
        &["exec", "side", "wget", "-qO-", "http://127.0.0.1:80/"],
    )
    .ok();
    assert_eq!(r.stdout, "main-server\n");
    f(home.path(), &["rm", "-f", "side"]).ok();
    // The main container must run.
    f(home.path(), &["stop", "-t", "1", "main"]).ok();
    let r = f(
        home.path(),
        &["run", "--rm", "--network", "container:main", &img, "true"],
    );
    refused(r, "cannot join network of a non running container: main");
    f(home.path(), &["rm", "main"]).ok();
}

#[test]
fn services_hosts_dns_and_stop_flags_like_docker() {
    let s = require_services!();
    let home = tempdir();
    let img = install(s, home.path(), "ferry/busybox:oci");
    let flags = [
        "--add-host",
        "db:10.1.2.3",
        "--add-host",
        "v6host:fd00::1",
        "--dns",
        "10.0.0.53",
        "--dns-search",
        "corp.example",
        "--dns-option",
        "ndots:2",
    ];
    let script = "tail -n 2 /etc/hosts; cat /etc/resolv.conf";
    let mut a = vec!["run", "--rm", "--network", "none"];
    a.extend_from_slice(&flags);
    a.extend_from_slice(&[&img, "sh", "-c", script]);
    let ours = f(home.path(), &a).ok();
    let mut d = s.docker();
    d.args(["run", "--rm", "--network", "none"])
        .args(flags)
        .args([&img, "sh", "-c", script]);
    let theirs = run(d).ok();
    assert_eq!(
        ours.stdout,
        "10.1.2.3\tdb\nfd00::1\tv6host\nsearch corp.example\nnameserver 10.0.0.53\noptions ndots:2\n"
    );
    assert_eq!(ours.stdout, theirs.stdout);
    let bad = f(
        home.path(),
        &["run", "--rm", "--add-host", "nocolon", &img, "true"],
    );
    refused(bad, "bad format for add-host");

    // --stop-signal reaches the container's trap; --stop-timeout bounds the wait.
    let r = f(
        home.path(),
        &[
            "run",
            "-d",
            "--name",
            "sig",
            "--stop-signal",
            "USR1",
            &img,
            "sh",
            "-c",
            "trap 'echo got USR1; exit 0' USR1; while true; do sleep 0.1; done",
        ],
    )
    .ok();
    let _ = r;
    std::thread::sleep(Duration::from_millis(300));
    f(home.path(), &["stop", "sig"]).ok();
    assert_eq!(f(home.path(), &["logs", "sig"]).ok().stdout, "got USR1\n");
    assert_eq!(ferry_inspect(home.path(), "sig")["State"]["ExitCode"], 0);
    f(
        home.path(),
        &[
            "run",
            "-d",
            "--name",
            "slow",
            "--stop-timeout",
            "1",
            &img,
            "sleep",
            "60",
        ],
    )
    .ok();
    let t = Instant::now();
    f(home.path(), &["stop", "slow"]).ok();
    let took = t.elapsed();
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(5),
        "{took:?}"
    );
    assert_eq!(ferry_inspect(home.path(), "slow")["State"]["ExitCode"], 137);
    let bad = f(
        home.path(),
        &["run", "--rm", "--stop-signal", "NOPE", &img, "true"],
    );
    refused(bad, "Invalid signal: NOPE");
    f(home.path(), &["rm", "sig", "slow"]).ok();
}

/// `RestartCount` and status once the container stops for good.
fn settled(cmd: impl Fn() -> Command, name: &str) -> (u64, String) {
    wait_until(30, "the container to stop restarting", || {
        let doc = inspect(cmd(), name);
        (doc["State"]["Status"] == "exited").then(|| {
            (
                doc["RestartCount"].as_u64().unwrap(),
                doc["State"]["ExitCode"].to_string(),
            )
        })
    })
}

#[test]
fn services_on_failure_restarts_n_times_like_docker() {
    let s = require_services!();
    let home = tempdir();
    let img = install(s, home.path(), "ferry/busybox:oci");
    let args = [
        "--restart",
        "on-failure:3",
        &img,
        "sh",
        "-c",
        "echo run; exit 1",
    ];
    let mut a = vec!["run", "-d", "--name", "flaky"];
    a.extend_from_slice(&args);
    f(home.path(), &a).ok();
    // Between runs ps shows Docker's "Restarting (1)".
    let mut seen_restarting = false;
    let (count, code) = wait_until(30, "three restarts", || {
        let ps = f(home.path(), &["ps", "-a"]).ok().stdout;
        seen_restarting |= ps.contains("Restarting (1)");
        let doc = ferry_inspect(home.path(), "flaky");
        (doc["State"]["Status"] == "exited" && doc["RestartCount"] == 3).then(|| {
            (
                doc["RestartCount"].as_u64().unwrap(),
                doc["State"]["ExitCode"].to_string(),
            )
        })
    });
    assert!(seen_restarting, "ps never showed the container restarting");
    let mut net = DockerNet::new(s, "onfailure");
    net.run_d("flaky", &args).ok();
    let dname = format!("{}-flaky", net.name);
    let docker = settled(|| net.docker(), &dname);
    assert_eq!((count, code.clone()), docker);
    assert_eq!((count, code.as_str()), (3, "1"));
    let ours = f(home.path(), &["logs", "flaky"]).ok();
    let theirs = run(net.docker().args(["logs", &dname])).ok();
    assert_eq!(ours.stdout, "run\nrun\nrun\nrun\n");
    assert_eq!(ours.stdout, theirs.stdout);
    let ps = f(home.path(), &["ps", "-a"]).ok();
    assert!(ps.stdout.contains("Exited (1)"), "{}", ps.stdout);
    // A bad policy in Docker's words.
    let r = f(
        home.path(),
        &["run", "--rm", "--restart", "always", &img, "true"],
    );
    refused(r, "Conflicting options: --restart and --rm");
    let r = f(
        home.path(),
        &["run", "-d", "--restart", "always:3", &img, "true"],
    );
    refused(
        r,
        "maximum retry count cannot be used with restart policy 'always'",
    );
    f(home.path(), &["rm", "flaky"]).ok();
}

#[test]
fn services_always_survives_a_kill_and_stop_ends_it_for_good() {
    let s = require_services!();
    let home = tempdir();
    let img = install(s, home.path(), "ferry/busybox:oci");
    let port = serve_on_free_port(
        home.path(),
        &img,
        "svc",
        &["--restart", "always"],
        "always-up",
    );
    let first = ferry_inspect(home.path(), "svc")["State"]["Pid"]
        .as_i64()
        .unwrap();
    // SAFETY: SIGKILL to the container's process, from outside: a crash, not a stop.
    unsafe { libc::kill(first as i32, libc::SIGKILL) };
    let second = wait_until(15, "the restart", || {
        let doc = ferry_inspect(home.path(), "svc");
        let pid = doc["State"]["Pid"].as_i64().unwrap_or(0);
        (doc["State"]["Status"] == "running" && pid != first && pid > 0)
            .then(|| (pid, doc["RestartCount"].as_u64().unwrap()))
    });
    assert_eq!(second.1, 1);
    // Its port is served again.
    assert_eq!(http_ready(port), "always-up\n");
    // `ferry stop` ends it for good.
    f(home.path(), &["stop", "-t", "1", "svc"]).ok();
    std::thread::sleep(Duration::from_secs(2));
    let doc = ferry_inspect(home.path(), "svc");
    assert_eq!(doc["State"]["Status"], "exited");
    assert_eq!(doc["RestartCount"], 1);
    assert!(http_get(port, "/").is_none_or(|b| b.is_empty()));
    // So does `ferry kill`, as in Docker.
    f(home.path(), &["start", "svc"]).ok();
    assert_eq!(http_ready(port), "always-up\n");
    assert_eq!(ferry_inspect(home.path(), "svc")["RestartCount"], 0);
    f(home.path(), &["kill", "svc"]).ok();
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        ferry_inspect(home.path(), "svc")["State"]["Status"],
        "exited"
    );
    // Docker agrees on both: a killed process comes back, `docker kill` does not.
    let mut net = DockerNet::new(s, "always");
    net.run_d("svc", &["--restart", "always", &img, "sleep", "60"])
        .ok();
    let dname = format!("{}-svc", net.name);
    let dpid = inspect(net.docker(), &dname)["State"]["Pid"]
        .as_i64()
        .unwrap();
    // SAFETY: as above, for Docker's container.
    unsafe { libc::kill(dpid as i32, libc::SIGKILL) };
    wait_until(15, "Docker's restart", || {
        (inspect(net.docker(), &dname)["RestartCount"] == 1).then_some(())
    });
    run(net.docker().args(["kill", &dname])).ok();
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(inspect(net.docker(), &dname)["State"]["Status"], "exited");
    f(home.path(), &["rm", "svc"]).ok();
}

#[test]
fn services_start_attach_restart_and_wait() {
    let s = require_services!();
    let home = tempdir();
    let img = install(s, home.path(), "ferry/busybox:oci");
    f(
        home.path(),
        &[
            "run",
            "-d",
            "--name",
            "job",
            &img,
            "sh",
            "-c",
            "echo out-$$; exit 3",
        ],
    )
    .ok();
    assert_eq!(f(home.path(), &["wait", "job"]).ok().stdout, "3\n");
    // start -a: only this run's output, and its status.
    let r = f(home.path(), &["start", "-a", "job"]);
    assert_eq!(r.code, Some(3), "{r:?}");
    assert_eq!(r.stdout, "out-1\n");
    assert_eq!(
        f(home.path(), &["logs", "job"]).ok().stdout,
        "out-1\nout-1\n"
    );
    // start -ai: standard input reaches it.
    f(
        home.path(),
        &[
            "run",
            "-d",
            "-i",
            "--name",
            "cat",
            &img,
            "sh",
            "-c",
            "cat; exit 4",
        ],
    )
    .ok();
    f(home.path(), &["wait", "cat"]).ok();
    let mut child = ferry(home.path())
        .args(["start", "-a", "-i", "cat"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(b"typed\n").unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(4));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "typed\n");
    // restart: a new process; wait follows a running container to its end; the management
    // command spells the same verbs.
    f(
        home.path(),
        &["run", "-d", "--name", "long", &img, "sleep", "60"],
    )
    .ok();
    let before = ferry_inspect(home.path(), "long")["State"]["Pid"].clone();
    f(home.path(), &["restart", "-t", "1", "long"]).ok();
    let after = ferry_inspect(home.path(), "long");
    assert_eq!(after["State"]["Status"], "running");
    assert_ne!(after["State"]["Pid"], before);
    let waiter = ferry(home.path())
        .args(["container", "wait", "long"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    f(home.path(), &["kill", "long"]).ok();
    let out = waiter.wait_with_output().unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "137\n");
    f(home.path(), &["container", "start", "long"]).ok();
    assert_eq!(
        ferry_inspect(home.path(), "long")["State"]["Status"],
        "running"
    );
    let r = f(home.path(), &["wait", "nope"]);
    assert_ne!(r.code, Some(0));
    r.assert_stderr("no such container: nope");
    f(home.path(), &["rm", "-f", "job", "cat", "long"]).ok();
}

/// The value of `Key=` in a unit's text.
fn unit_value<'a>(unit: &'a str, key: &str) -> &'a str {
    unit.lines()
        .find_map(|l| l.strip_prefix(&format!("{key}=")))
        .unwrap_or_else(|| panic!("{key}= missing from the unit:\n{unit}"))
}

/// Runs one of the unit's command lines as systemd would (with its `Environment=`).
fn unit_command(unit: &str, key: &str) -> Ran {
    let line = unit_value(unit, key);
    let mut words = line.split(' ');
    let mut cmd = Command::new(words.next().unwrap());
    cmd.args(words);
    if let Some((k, v)) = unit_value(unit, "Environment").split_once('=') {
        cmd.env(k, v);
    }
    run(cmd)
}

#[test]
fn services_generated_systemd_unit_verifies_and_brings_the_container_back() {
    let s = require_services!();
    let home = tempdir();
    let img = install(s, home.path(), "ferry/busybox:oci");
    let port = serve_on_free_port(
        home.path(),
        &img,
        "web",
        &["--restart", "always", "--stop-timeout", "1"],
        "served-by-systemd",
    );
    let unit = f(home.path(), &["generate", "systemd", "--name", "web"])
        .ok()
        .stdout;
    assert!(unit.starts_with("# container-web.service\n"), "{unit}");
    assert_eq!(unit_value(&unit, "Type"), "forking");
    assert!(
        unit_value(&unit, "ExecStop").ends_with(" stop -t 1 web"),
        "{unit}"
    );
    // `--files` writes the same unit where systemd-analyze can read it by its name.
    let dir = home.path().join("units");
    std::fs::create_dir(&dir).unwrap();
    let written = run(ferry(home.path())
        .current_dir(&dir)
        .args(["generate", "systemd", "--name", "--files", "web"]))
    .ok();
    let path = dir.join("container-web.service");
    assert_eq!(written.stdout.trim(), path.to_str().unwrap());
    assert_eq!(std::fs::read_to_string(&path).unwrap(), unit);
    let verify = run(Command::new("systemd-analyze").arg("verify").arg(&path));
    assert_eq!(verify.code, Some(0), "{verify:?}");
    assert_eq!(
        verify.stderr, "",
        "systemd-analyze has remarks:\n{}",
        verify.stderr
    );

    // What systemd does with it. Stop, then ExecStart: the container serves again and the
    // pid file names its monitor.
    assert_eq!(unit_command(&unit, "ExecStop").code, Some(0));
    assert!(http_get(port, "/").is_none_or(|b| b.is_empty()));
    assert_eq!(unit_command(&unit, "ExecStart").code, Some(0));
    assert_eq!(http_ready(port), "served-by-systemd\n");
    let monitor: i32 = std::fs::read_to_string(unit_value(&unit, "PIDFile"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(Path::new(&format!("/proc/{monitor}")).exists());
    // A power cut: every process gone, the state on disk still says running. At boot,
    // ExecStart brings it back.
    let pid = ferry_inspect(home.path(), "web")["State"]["Pid"]
        .as_i64()
        .unwrap() as i32;
    // SAFETY: kills the monitor and the container's process, as a power cut would.
    unsafe {
        libc::kill(monitor, libc::SIGKILL);
        libc::kill(pid, libc::SIGKILL);
    }
    wait_until(10, "the processes to die", || {
        (!Path::new(&format!("/proc/{pid}")).exists()).then_some(())
    });
    assert_eq!(
        ferry_inspect(home.path(), "web")["State"]["Status"],
        "exited"
    );
    assert_eq!(unit_command(&unit, "ExecStart").code, Some(0));
    assert_eq!(http_ready(port), "served-by-systemd\n");
    // ExecStop ends it, monitor included.
    let monitor: i32 = std::fs::read_to_string(unit_value(&unit, "PIDFile"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert_eq!(unit_command(&unit, "ExecStop").code, Some(0));
    wait_until(10, "the monitor to exit", || {
        (!Path::new(&format!("/proc/{monitor}")).exists()).then_some(())
    });
    assert_eq!(
        ferry_inspect(home.path(), "web")["State"]["Status"],
        "exited"
    );
    let bad = f(
        home.path(),
        &[
            "generate",
            "systemd",
            "--restart-policy",
            "sometimes",
            "web",
        ],
    );
    assert_ne!(bad.code, Some(0));
    bad.assert_stderr("sometimes is not a valid restart policy");
    f(home.path(), &["rm", "web"]).ok();
}

/// Docker volumes made by one test, removed at the end.
struct DockerVolumes<'a> {
    s: &'a Services,
    prefix: String,
}

impl<'a> DockerVolumes<'a> {
    fn new(s: &'a Services, test: &str) -> Self {
        run(s
            .docker()
            .args(["pull", "-q", &s.image("ferry/multilayer:oci")]))
        .ok();
        DockerVolumes {
            s,
            prefix: format!("ferry-it-{test}-{}", std::process::id()),
        }
    }

    fn name(&self, v: &str) -> String {
        format!("{}-{v}", self.prefix)
    }
}

impl Drop for DockerVolumes<'_> {
    fn drop(&mut self) {
        let out =
            run(self
                .s
                .docker()
                .args(["ps", "-aq", "--filter", &format!("name={}", self.prefix)]));
        for id in out.stdout.split_whitespace() {
            let _ = self.s.docker().args(["rm", "-f", id]).output();
        }
        let out = run(self.s.docker().args([
            "volume",
            "ls",
            "-q",
            "--filter",
            &format!("name={}", self.prefix),
        ]));
        for v in out.stdout.split_whitespace() {
            let _ = self.s.docker().args(["volume", "rm", v]).output();
        }
    }
}

#[test]
fn services_named_volume_is_filled_kept_shared_and_guarded_like_docker() {
    let s = require_services!();
    let home = tempdir();
    let img = install(s, home.path(), "ferry/multilayer:oci");
    let dv = DockerVolumes::new(s, "volumes");
    // First use fills the volume from the image: /app after its whiteouts, /data/old after its
    // opaque directory, with the directory's owner and mode.
    let fill = |target: &str, vol: &str| -> (String, String) {
        let script = format!("cd {target} && stat -c '%u:%g %a' . && find . | sort");
        let mount = format!("{vol}:{target}");
        let ours = f(
            home.path(),
            &[
                "run", "--rm", "-u", "0", "-v", &mount, &img, "sh", "-c", &script,
            ],
        )
        .ok();
        let dmount = format!("{}:{target}", dv.name(vol));
        let theirs = run(s.docker().args([
            "run", "--rm", "-u", "0", "-v", &dmount, &img, "sh", "-c", &script,
        ]))
        .ok();
        (ours.stdout, theirs.stdout)
    };
    let (ours, theirs) = fill("/app", "app");
    assert_eq!(ours, theirs);
    assert!(ours.contains("./keep.txt"), "{ours}");
    let (ours, theirs) = fill("/data", "data");
    assert_eq!(ours, theirs);
    assert!(
        ours.contains("./old/c") && !ours.contains("./old/a"),
        "{ours}"
    );
    let vols = f(home.path(), &["volume", "ls", "-q"]).ok();
    assert_eq!(vols.stdout, "app\ndata\n");
    // Kept when its containers are gone; not filled again once it has content.
    f(
        home.path(),
        &[
            "run",
            "--rm",
            "-u",
            "0",
            "-v",
            "app:/app",
            &img,
            "sh",
            "-c",
            "echo mine > /app/new; rm /app/keep.txt",
        ],
    )
    .ok();
    let r = f(
        home.path(),
        &[
            "run",
            "--rm",
            "-v",
            "app:/app",
            &img,
            "sh",
            "-c",
            "ls /app; cat /app/new",
        ],
    )
    .ok();
    assert_eq!(r.stdout, "new\nmine\n");
    // Shared by two running containers.
    for name in ["one", "two"] {
        f(
            home.path(),
            &[
                "run",
                "-d",
                "--name",
                name,
                "-u",
                "0",
                "-v",
                "shared:/shared",
                &img,
                "sleep",
                "60",
            ],
        )
        .ok();
    }
    f(
        home.path(),
        &["exec", "one", "sh", "-c", "echo from-one > /shared/x"],
    )
    .ok();
    let r = f(home.path(), &["exec", "two", "cat", "/shared/x"]).ok();
    assert_eq!(r.stdout, "from-one\n");
    // Refused by `volume rm` while a container names it, running or not, in Docker's words.
    f(home.path(), &["stop", "-t", "0", "one"]).ok();
    let ids: Vec<String> = ["one", "two"]
        .iter()
        .map(|n| {
            ferry_inspect(home.path(), n)["Id"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    let r = f(home.path(), &["volume", "rm", "shared"]);
    assert_eq!(r.code, Some(1));
    let used_by = |list: &str| format!("remove shared: volume is in use - [{list}]");
    assert!(
        r.stderr
            .contains(&used_by(&format!("{}, {}", ids[1], ids[0])))
            || r.stderr
                .contains(&used_by(&format!("{}, {}", ids[0], ids[1]))),
        "{}",
        r.stderr
    );
    run(s.docker().args([
        "run",
        "-d",
        "--name",
        &dv.name("holder"),
        "-v",
        &format!("{}:/x", dv.name("app")),
        &img,
        "sleep",
        "60",
    ]))
    .ok();
    let theirs = run(s.docker().args(["volume", "rm", &dv.name("app")]));
    assert_eq!(theirs.code, Some(1));
    theirs.assert_stderr(&format!("remove {}: volume is in use - [", dv.name("app")));
    f(home.path(), &["rm", "-f", "one", "two"]).ok();
    f(home.path(), &["volume", "rm", "shared"]).ok();
    let r = f(home.path(), &["volume", "rm", "shared"]);
    assert_eq!(r.code, Some(1));
    r.assert_stderr("No such volume: shared");
    // inspect as Docker's.
    let doc: Value =
        serde_json::from_str(&f(home.path(), &["volume", "inspect", "app"]).ok().stdout).unwrap();
    assert_eq!(doc[0]["Name"], "app");
    assert_eq!(doc[0]["Driver"], "local");
    assert!(
        doc[0]["Mountpoint"]
            .as_str()
            .unwrap()
            .ends_with("/volumes/app/_data")
    );
    let bad = f(home.path(), &["volume", "create", "a b"]);
    assert_ne!(bad.code, Some(0));
    bad.assert_stderr("\"a b\" includes invalid characters for a local volume name");
    // prune removes what no container names.
    f(
        home.path(),
        &[
            "run", "-d", "--name", "keeper", "-v", "app:/app", &img, "sleep", "60",
        ],
    )
    .ok();
    // system df counts them: both volumes, one in use.
    let df = |h: &Path| {
        let out = f(
            h,
            &[
                "system",
                "df",
                "--format",
                "{{.Type}}|{{.TotalCount}}|{{.Active}}",
            ],
        );
        out.ok()
            .stdout
            .lines()
            .find(|l| l.starts_with("Local Volumes|"))
            .map(str::to_string)
    };
    assert_eq!(df(home.path()).as_deref(), Some("Local Volumes|2|1"));
    let pruned = f(home.path(), &["volume", "prune", "-f"]).ok();
    assert!(
        pruned.stdout.starts_with("Deleted Volumes:\ndata\n"),
        "{}",
        pruned.stdout
    );
    assert_eq!(f(home.path(), &["volume", "ls", "-q"]).ok().stdout, "app\n");
    assert_eq!(df(home.path()).as_deref(), Some("Local Volumes|1|1"));
    f(home.path(), &["rm", "-f", "keeper"]).ok();
}

#[test]
fn services_anonymous_volumes_and_mount_flags_like_docker() {
    let s = require_services!();
    let home = tempdir();
    let img = install(s, home.path(), "ferry/busybox:oci");
    // -v /path: an anonymous volume, kept by `rm`, taken by `rm -v` and by --rm.
    f(
        home.path(),
        &[
            "run", "-d", "--name", "anon", "-v", "/cache", &img, "sleep", "60",
        ],
    )
    .ok();
    let vols = f(home.path(), &["volume", "ls", "-q"]).ok().stdout;
    assert_eq!(vols.len(), 65, "{vols}");
    f(home.path(), &["rm", "-f", "anon"]).ok();
    assert_eq!(f(home.path(), &["volume", "ls", "-q"]).ok().stdout, vols);
    f(
        home.path(),
        &[
            "run", "-d", "--name", "anon2", "-v", "/cache", &img, "sleep", "60",
        ],
    )
    .ok();
    f(home.path(), &["rm", "-f", "-v", "anon2"]).ok();
    assert_eq!(f(home.path(), &["volume", "ls", "-q"]).ok().stdout, vols);
    f(home.path(), &["run", "--rm", "-v", "/cache", &img, "true"]).ok();
    wait_until(10, "--rm to take its anonymous volume", || {
        (f(home.path(), &["volume", "ls", "-q"]).ok().stdout == vols).then_some(())
    });
    // --mount: volume (read-only), bind (must exist), tmpfs.
    let host = home.path().join("bind-src");
    std::fs::create_dir(&host).unwrap();
    std::fs::write(host.join("f"), "bound\n").unwrap();
    let script = "cat /b/f; touch /v/x 2>/dev/null || echo v-ro; grep -c ' /t tmpfs' /proc/mounts";
    let mounts = [
        "--mount".to_string(),
        "type=volume,source=mvol,target=/v,readonly".into(),
        "--mount".into(),
        format!("type=bind,source={},target=/b", host.display()),
        "--mount".into(),
        "type=tmpfs,target=/t,tmpfs-size=1m".into(),
    ];
    let mut a: Vec<&str> = vec!["run", "--rm"];
    a.extend(mounts.iter().map(String::as_str));
    a.extend_from_slice(&[&img, "sh", "-c", script]);
    let ours = f(home.path(), &a).ok();
    assert_eq!(ours.stdout, "bound\nv-ro\n1\n");
    let dv = DockerVolumes::new(s, "mounts");
    let dmounts: Vec<String> = mounts
        .iter()
        .map(|m| m.replace("source=mvol", &format!("source={}", dv.name("mvol"))))
        .collect();
    let mut d = s.docker();
    d.args(["run", "--rm"])
        .args(&dmounts)
        .args([&img, "sh", "-c", script]);
    assert_eq!(run(d).ok().stdout, ours.stdout);
    // Docker's messages for bad mounts.
    let missing = "type=bind,source=/nonexistent-ferry-src,target=/x";
    let r = f(
        home.path(),
        &["run", "--rm", "--mount", missing, &img, "true"],
    );
    assert_eq!(r.code, Some(125));
    let expect = "invalid mount config for type \"bind\": bind source path does not exist: /nonexistent-ferry-src";
    r.assert_stderr(expect);
    run(s
        .docker()
        .args(["run", "--rm", "--mount", missing, &img, "true"]))
    .assert_stderr(expect);
    let r = f(
        home.path(),
        &["run", "--rm", "--mount", "type=bind", &img, "true"],
    );
    refused(r, "target is required");
    // Nothing was left by the failed runs.
    assert_eq!(f(home.path(), &["ps", "-aq"]).ok().stdout, "");
}

#[test]
fn services_image_healthcheck_expose_volume_and_health_flags_like_docker() {
    let s = require_services!();
    let home = tempdir();
    // ferry/service: httpd on 8080 with EXPOSE 8080, VOLUME /srv/www, STOPSIGNAL SIGINT and a
    // HEALTHCHECK fetching its own page every second.
    let img = install(s, home.path(), "ferry/service:oci");
    let mut net = DockerNet::new(s, "health");
    run(s.docker().args(["pull", "-q", &img])).ok();
    f(home.path(), &["run", "-d", "--name", "svc", "-P", &img]).ok();
    net.run_d("svc", &["-P", &img]).ok();
    let dname = format!("{}-svc", net.name);
    // -P publishes the image's EXPOSE; its VOLUME is an anonymous volume filled from it.
    let port = published_port(&f(home.path(), &["port", "svc", "8080"]).ok().stdout);
    assert_eq!(http_ready(port), "served from the image\n");
    let dport = published_port(&run(net.docker().args(["port", &dname, "8080"])).ok().stdout);
    assert_eq!(http_ready(dport), "served from the image\n");
    let ours = ferry_inspect(home.path(), "svc");
    let theirs = inspect(net.docker(), &dname);
    for key in ["Healthcheck", "ExposedPorts", "StopSignal"] {
        assert_eq!(ours["Config"][key], theirs["Config"][key], "Config.{key}");
    }
    assert_eq!(ours["Mounts"][0]["Type"], "volume");
    assert_eq!(
        ours["Mounts"][0]["Destination"],
        theirs["Mounts"][0]["Destination"]
    );
    let owner = "stat -c '%u:%g %a' /srv/www";
    assert_eq!(
        f(home.path(), &["exec", "svc", "sh", "-c", owner])
            .ok()
            .stdout,
        run(net.docker().args(["exec", &dname, "sh", "-c", owner]))
            .ok()
            .stdout
    );
    // Both become healthy, and ps says so.
    for (cmd, name) in [
        (
            Box::new(|| ferry_inspect(home.path(), "svc")) as Box<dyn Fn() -> Value>,
            "ferry",
        ),
        (Box::new(|| inspect(net.docker(), &dname)), "docker"),
    ] {
        let h = wait_until(20, &format!("{name}: healthy"), || {
            let doc = cmd();
            (doc["State"]["Health"]["Status"] == "healthy").then(|| doc["State"]["Health"].clone())
        });
        assert_eq!(h["FailingStreak"], 0);
        assert_eq!(h["Log"][0]["ExitCode"], 0);
    }
    let ps = f(home.path(), &["ps"]).ok();
    assert!(ps.stdout.contains("(healthy)"), "{}", ps.stdout);
    let dps = run(net.docker().args([
        "ps",
        "--filter",
        &format!("name={dname}"),
        "--format",
        "{{.Status}}",
    ]))
    .ok();
    assert!(dps.stdout.contains("(healthy)"), "{}", dps.stdout);

    // A failing check: unhealthy after `retries` failures in a row, output kept.
    let flags = [
        "--health-cmd",
        "echo not-ok; exit 1",
        "--health-interval",
        "500ms",
        "--health-retries",
        "2",
    ];
    // Each in a namespace of its own: their httpd all listen on 8080.
    let mut a = vec!["run", "-d", "--name", "sick", "--network", "none"];
    a.extend_from_slice(&flags);
    a.push(&img);
    f(home.path(), &a).ok();
    let mut d = flags.to_vec();
    d.push(&img);
    net.run_d("sick", &d).ok();
    let dsick = format!("{}-sick", net.name);
    for (cmd, name) in [
        (
            Box::new(|| ferry_inspect(home.path(), "sick")) as Box<dyn Fn() -> Value>,
            "ferry",
        ),
        (Box::new(|| inspect(net.docker(), &dsick)), "docker"),
    ] {
        let h = wait_until(20, &format!("{name}: unhealthy"), || {
            let doc = cmd();
            (doc["State"]["Health"]["Status"] == "unhealthy")
                .then(|| doc["State"]["Health"].clone())
        });
        assert!(h["FailingStreak"].as_u64().unwrap() >= 2, "{name}: {h}");
        assert_eq!(h["Log"][0]["ExitCode"], 1);
        assert_eq!(h["Log"][0]["Output"], "not-ok\n");
    }
    let ps = f(home.path(), &["ps"]).ok();
    assert!(ps.stdout.contains("(unhealthy)"), "{}", ps.stdout);
    // --no-healthcheck turns the image's off.
    f(
        home.path(),
        &[
            "run",
            "-d",
            "--name",
            "plain",
            "--no-healthcheck",
            "--network",
            "none",
            &img,
        ],
    )
    .ok();
    std::thread::sleep(Duration::from_millis(1500));
    assert!(ferry_inspect(home.path(), "plain")["State"]["Health"].is_null());
    // Healthchecks reach the container's processes, not the host's: a check that needs the
    // container's own file.
    let r = f(
        home.path(),
        &[
            "run",
            "-d",
            "--name",
            "mine",
            "--network",
            "none",
            "--health-cmd",
            "test -e /srv/www/index.html",
            "--health-interval",
            "300ms",
            &img,
        ],
    );
    r.ok();
    wait_until(20, "a check on the container's file", || {
        (ferry_inspect(home.path(), "mine")["State"]["Health"]["Status"] == "healthy").then_some(())
    });
    f(
        home.path(),
        &["rm", "-f", "-v", "svc", "sick", "plain", "mine"],
    )
    .ok();
}

/// `ferry ARGS…` as `nobody` (a rootless user) on a store that user owns.
fn rootless(home: &Path, args: &[&str]) -> Ran {
    run(Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
        .arg(env!("CARGO_BIN_EXE_ferry"))
        .env("FERRY_ROOT", home.join("store"))
        .env("HOME", home)
        .args(args))
}

#[test]
fn services_rootless_publishes_ports_and_brings_loopback_up() {
    let s = require_services!();
    let dir = crate::harness::tempdir_for_any_user();
    let home = dir.path();
    let img = install(s, home, "ferry/busybox:oci");
    let st = Command::new("chown")
        .args(["-R", "65534:65534"])
        .arg(home.join("store"))
        .status()
        .unwrap();
    assert!(st.success());
    // The proxy joins the container's user namespace, then its network namespace.
    let script = httpd_script("rootless-server");
    rootless(
        home,
        &[
            "run",
            "-d",
            "--name",
            "rl",
            "-p",
            "127.0.0.1::80",
            &img,
            "sh",
            "-c",
            &script,
        ],
    )
    .ok();
    let port = published_port(&rootless(home, &["port", "rl", "80"]).ok().stdout);
    assert_eq!(http_ready(port), "rootless-server\n");
    rootless(home, &["stop", "-t", "1", "rl"]).ok();
    drop(std::net::TcpListener::bind(("127.0.0.1", port)).expect("port freed by stop"));
    rootless(home, &["rm", "rl"]).ok();
    let r = rootless(
        home,
        &[
            "run",
            "--rm",
            "--network",
            "none",
            &img,
            "sh",
            "-c",
            "ip -o link show lo | grep -q UP && ping -c1 -W2 127.0.0.1 >/dev/null && echo lo-up",
        ],
    )
    .ok();
    assert_eq!(r.stdout, "lo-up\n");
}

#[test]
fn services_ports_and_restarts_under_runc_and_crun() {
    let s = require_services!();
    let home = tempdir();
    let img = install(s, home.path(), "ferry/busybox:oci");
    for runtime in ["runc", "crun"] {
        // The proxy finds the container's process through `RUNTIME state`.
        let name = format!("web-{runtime}");
        serve(
            home.path(),
            &img,
            &name,
            &["--runtime", runtime, "-p", "127.0.0.1::80"],
            runtime,
        );
        let port = published_port(&f(home.path(), &["port", &name, "80"]).ok().stdout);
        assert_eq!(http_ready(port), format!("{runtime}\n"));
        f(home.path(), &["stop", "-t", "1", &name]).ok();
        drop(std::net::TcpListener::bind(("127.0.0.1", port)).expect("port freed by stop"));
        // The monitor runs the runtime again for each restart.
        let flaky = format!("flaky-{runtime}");
        f(
            home.path(),
            &[
                "run",
                "-d",
                "--name",
                &flaky,
                "--runtime",
                runtime,
                "--restart",
                "on-failure:2",
                &img,
                "sh",
                "-c",
                "echo run; exit 1",
            ],
        )
        .ok();
        let count = wait_until(30, "the restarts", || {
            let doc = ferry_inspect(home.path(), &flaky);
            (doc["State"]["Status"] == "exited" && doc["RestartCount"] == 2)
                .then(|| doc["State"]["ExitCode"].clone())
        });
        assert_eq!(count, 1);
        assert_eq!(
            f(home.path(), &["logs", &flaky]).ok().stdout,
            "run\nrun\nrun\n"
        );
    }
}
