//! `fault-proxy`: the test harness's fault-injecting registry proxy as a program, for
//! benchmarks that put latency or a bandwidth limit between a client and a real registry.
//!
//!     fault-proxy --listen 127.0.0.1:5100 --upstream 127.0.0.1:5000 [--latency-ms 100] [--bytes-per-sec N]

use std::time::Duration;

use ferry_testkit::{FaultProxy, Plan};

fn main() {
    let mut args = std::env::args().skip(1);
    let mut listen = "127.0.0.1:0".to_string();
    let mut upstream = None;
    let mut plan = Plan::default();
    while let Some(a) = args.next() {
        let mut value = || {
            args.next()
                .unwrap_or_else(|| usage(&format!("{a} needs a value")))
        };
        match a.as_str() {
            "--listen" => listen = value(),
            "--upstream" => upstream = Some(value()),
            "--latency-ms" => {
                plan.latency = Some(Duration::from_millis(
                    value()
                        .parse()
                        .unwrap_or_else(|_| usage("bad --latency-ms")),
                ))
            }
            "--bytes-per-sec" => {
                plan.bytes_per_sec = Some(
                    value()
                        .parse()
                        .unwrap_or_else(|_| usage("bad --bytes-per-sec")),
                )
            }
            other => usage(&format!("unknown argument {other}")),
        }
    }
    let upstream = upstream.unwrap_or_else(|| usage("--upstream is required"));
    let proxy = FaultProxy::start_on(&listen, &upstream, plan).unwrap_or_else(|e| {
        eprintln!("fault-proxy: cannot listen on {listen}: {e}");
        std::process::exit(1)
    });
    println!("{}", proxy.addr);
    loop {
        std::thread::park();
    }
}

fn usage(msg: &str) -> ! {
    eprintln!(
        "fault-proxy: {msg}\nusage: fault-proxy --upstream HOST:PORT [--listen ADDR] [--latency-ms MS] [--bytes-per-sec N]"
    );
    std::process::exit(2)
}
