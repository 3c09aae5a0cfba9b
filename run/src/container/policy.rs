//! `--restart no|on-failure[:N]|always|unless-stopped` and Docker's back-off between
//! restarts: 100 ms, doubled after each restart up to one minute, back to 100 ms once the
//! container has run for 10 seconds. A container stopped by the user (`ferry stop`, `kill`,
//! `rm -f`) is never restarted.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// When the monitor restarts a container that exited.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "name")]
pub enum RestartPolicy {
    /// Never (the default).
    #[default]
    No,
    /// When it exits with a status other than 0, at most `max` times (0: no limit).
    OnFailure {
        /// `on-failure:N`.
        max: u32,
    },
    /// Whatever its status.
    Always,
    /// Whatever its status; differs from `always` only where a daemon restarts, which ferry
    /// has not (see `ferry generate systemd`).
    UnlessStopped,
}

impl RestartPolicy {
    /// Whether the policy restarts anything at all.
    pub fn is_no(&self) -> bool {
        *self == RestartPolicy::No
    }

    /// Docker's name (`on-failure`), for `inspect`.
    pub fn name(&self) -> &'static str {
        match self {
            RestartPolicy::No => "no",
            RestartPolicy::OnFailure { .. } => "on-failure",
            RestartPolicy::Always => "always",
            RestartPolicy::UnlessStopped => "unless-stopped",
        }
    }

    /// `on-failure`'s maximum retry count (0 otherwise).
    pub fn max_retries(&self) -> u32 {
        match self {
            RestartPolicy::OnFailure { max } => *max,
            _ => 0,
        }
    }
}

impl fmt::Display for RestartPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RestartPolicy::OnFailure { max } if *max > 0 => write!(f, "on-failure:{max}"),
            other => f.write_str(other.name()),
        }
    }
}

impl FromStr for RestartPolicy {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (name, count) = match s.split_once(':') {
            Some((n, c)) => (n, Some(c)),
            None => (s, None),
        };
        let policy = match name {
            "" | "no" => RestartPolicy::No,
            "always" => RestartPolicy::Always,
            "unless-stopped" => RestartPolicy::UnlessStopped,
            "on-failure" => {
                let max = match count {
                    None => 0,
                    Some(c) => {
                        let n: i64 = c
                            .parse()
                            .map_err(|_| "maximum retry count must be an integer".to_string())?;
                        u32::try_from(n).map_err(|_| {
                            "invalid restart policy: maximum retry count cannot be negative"
                                .to_string()
                        })?
                    }
                };
                return Ok(RestartPolicy::OnFailure { max });
            }
            _ => return Err(format!("invalid restart policy '{s}'")),
        };
        if count.is_some() {
            return Err(format!(
                "maximum retry count cannot be used with restart policy '{name}'"
            ));
        }
        Ok(policy)
    }
}

/// The restart manager of one container: decides after each exit, and how long to wait.
#[derive(Debug, Clone, Default)]
pub struct Backoff {
    delay: Duration,
    /// Restarts so far (Docker's `RestartCount`).
    pub count: u32,
}

const FIRST: Duration = Duration::from_millis(100);
const MAX: Duration = Duration::from_secs(60);
const RESET_AFTER: Duration = Duration::from_secs(10);

impl Backoff {
    /// Starts counting from `count` restarts already made.
    pub fn new(count: u32) -> Self {
        Backoff {
            delay: Duration::ZERO,
            count,
        }
    }

    /// After the container exited with `code` having run `ran_for`: the delay before the
    /// next start, or `None` when it stays stopped.
    pub fn next(
        &mut self,
        policy: RestartPolicy,
        code: i32,
        ran_for: Duration,
        stopped_by_user: bool,
    ) -> Option<Duration> {
        if ran_for >= RESET_AFTER {
            self.delay = Duration::ZERO;
        }
        self.delay = if self.delay.is_zero() {
            FIRST
        } else {
            (self.delay * 2).min(MAX)
        };
        let restart = !stopped_by_user
            && match policy {
                RestartPolicy::No => false,
                RestartPolicy::Always | RestartPolicy::UnlessStopped => true,
                RestartPolicy::OnFailure { max } => code != 0 && (max == 0 || self.count < max),
            };
        if !restart {
            return None;
        }
        self.count += 1;
        Some(self.delay)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policies_parse_with_dockers_messages() {
        assert_eq!("no".parse(), Ok(RestartPolicy::No));
        assert_eq!("always".parse(), Ok(RestartPolicy::Always));
        assert_eq!("unless-stopped".parse(), Ok(RestartPolicy::UnlessStopped));
        assert_eq!(
            "on-failure".parse(),
            Ok(RestartPolicy::OnFailure { max: 0 })
        );
        assert_eq!(
            "on-failure:3".parse(),
            Ok(RestartPolicy::OnFailure { max: 3 })
        );
        assert_eq!(
            "on-failure:x".parse::<RestartPolicy>().unwrap_err(),
            "maximum retry count must be an integer"
        );
        assert_eq!(
            "always:3".parse::<RestartPolicy>().unwrap_err(),
            "maximum retry count cannot be used with restart policy 'always'"
        );
        assert_eq!(
            "bogus".parse::<RestartPolicy>().unwrap_err(),
            "invalid restart policy 'bogus'"
        );
        assert_eq!(
            RestartPolicy::OnFailure { max: 3 }.to_string(),
            "on-failure:3"
        );
    }

    #[test]
    fn on_failure_counts_and_stops() {
        let mut b = Backoff::default();
        let p = RestartPolicy::OnFailure { max: 2 };
        let quick = Duration::from_millis(5);
        assert_eq!(b.next(p, 1, quick, false), Some(FIRST));
        assert_eq!(b.next(p, 1, quick, false), Some(FIRST * 2));
        assert_eq!(b.next(p, 1, quick, false), None);
        assert_eq!(b.count, 2);
        // Success is not a failure.
        assert_eq!(Backoff::default().next(p, 0, quick, false), None);
    }

    #[test]
    fn delays_double_up_to_a_minute_and_reset_after_a_long_run() {
        let mut b = Backoff::default();
        let p = RestartPolicy::Always;
        let quick = Duration::from_millis(5);
        let delays: Vec<u64> = (0..12)
            .map(|_| b.next(p, 0, quick, false).unwrap().as_millis() as u64)
            .collect();
        assert_eq!(&delays[..4], [100, 200, 400, 800]);
        assert_eq!(delays[11], 60_000);
        assert_eq!(b.next(p, 0, Duration::from_secs(11), false), Some(FIRST));
        // The user's stop ends it for good, whatever the policy.
        assert_eq!(b.next(p, 0, quick, true), None);
    }
}
