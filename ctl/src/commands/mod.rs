//! One module per group of verbs: its clap arguments and its `cmd_*` function.

use std::io::IsTerminal;
use std::time::Duration;

use clap::Args;

use crate::wait::WaitOptions;

pub mod adopt;
pub mod apply;
pub mod events;
pub mod hooks;
pub mod images;
pub mod import;
pub mod logs;
pub mod status;
pub mod upstream;
pub mod verbs;

/// clap value parser: a service name as berthd accepts it.
pub fn service_name(s: &str) -> Result<String, String> {
    if berth_core::spec::valid_service_name(s) {
        Ok(s.to_string())
    } else {
        Err(
            "a service name is 1-63 lowercase letters, digits, `_` or `-`, \
             starting with a letter or digit"
                .to_string(),
        )
    }
}

/// clap value parser: `90s`, `5m`, `1h`.
pub fn duration(s: &str) -> Result<Duration, String> {
    let d = berth_core::units::parse_duration(s)?;
    if d.is_zero() {
        return Err("must be more than 0s".to_string());
    }
    Ok(d)
}

/// `--no-wait` / `--timeout` / `--wait-hooks` for every verb that creates a
/// deployment record.
#[derive(Debug, Clone, Args)]
pub struct WaitArgs {
    /// Return once berthd has recorded the change; do not wait for the
    /// deployment to finish.
    #[arg(long, overrides_with = "wait")]
    pub no_wait: bool,

    /// Wait for the deployment to finish (the default).
    #[arg(long, overrides_with = "no_wait")]
    pub wait: bool,

    /// Give up waiting after this long (exit 1; berthd carries on), e.g. 90s,
    /// 5m, 1h.
    #[arg(long, value_name = "DURATION", default_value = "5m", value_parser = duration)]
    pub timeout: Duration,

    /// Keep waiting while a deployment waits at a breakpoint hook, until
    /// someone clears it (`berthctl hook clear`) or --timeout passes.
    /// Without it, a breakpoint ends the wait with exit 3, naming the
    /// `berthctl hook clear SERVICE PHASE` that lets it go on. A running
    /// exec or http hook is waited for either way.
    #[arg(long)]
    pub wait_hooks: bool,
}

impl WaitArgs {
    pub fn options(&self, json: bool) -> WaitOptions {
        WaitOptions {
            timeout: self.timeout,
            live: !json && std::io::stdout().is_terminal(),
            quiet: json,
            wait_hooks: self.wait_hooks,
        }
    }
}

/// `1 service`, `2 services`.
pub fn plural(n: usize, one: &str, many: &str) -> String {
    if n == 1 {
        format!("{n} {one}")
    } else {
        format!("{n} {many}")
    }
}
