//! berth's development tasks: `cargo xtask <command>` (aliased in .cargo/config.toml).

mod bench;
mod bench_config;
mod chaos;
mod elf;
mod fuzz;
mod images;
mod run;
mod schemathesis;
mod tidy;
mod tiers;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "cargo xtask", about = "berth's development tasks", version)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Build the demo workload image (berth-demo:latest) from images/demo.
    ///
    /// Builds a static binary (x86_64-unknown-linux-gnu, +crt-static) in
    /// images/demo/target, checks its ELF headers (no interpreter, no needed
    /// libraries), and runs `docker build` unless the image's
    /// io.berth.demo-sha256 label already matches the binary.
    Images {
        /// Rebuild the image even if it is up to date.
        #[arg(long)]
        force: bool,
        /// Tag to build.
        #[arg(long, default_value = images::DEMO_IMAGE)]
        tag: String,
    },
    /// Check architecture invariants (berth-core's dependency closure).
    Tidy,
    /// Run the tests: with no TIER every one (what CI runs): tidy, the demo
    /// image, the binaries, then unit, property, loop and integration tests
    /// (nextest when installed), schemathesis (when installed; always in CI)
    /// and 8 chaos rounds. With a TIER only that slice (under nextest).
    ///
    /// core and loop need no Docker engine and no systemd. A missing
    /// prerequisite skips the tests that need it (they print SKIPPED), and
    /// fails the run in CI (`CI` set).
    ///
    /// Examples: `cargo xtask test loop`; `cargo xtask test engine -- sec_`
    /// (arguments after `--` go to the test runner, e.g. a name filter).
    Test {
        /// Only this tier.
        #[arg(value_enum)]
        tier: Option<tiers::Tier>,
        /// Passed on to the test runner (e.g. a test name filter).
        #[arg(last = true)]
        args: Vec<String>,
    },
    /// Start berthd on a temp state dir, apply examples/, show status; Ctrl-C cleans up.
    Demo {
        /// Apply, show status, clean up and exit (no waiting for Ctrl-C).
        #[arg(long)]
        once: bool,
    },
    /// Fuzz berthd's TCP API with schemathesis against its OpenAPI document
    /// (a live berthd, config in tests/schemathesis/; `cargo xtask test`
    /// runs it too when schemathesis is installed).
    Schemathesis {
        /// Passed on to `schemathesis run`.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Fuzz the parsers and the API router (cargo-fuzz targets in fuzz/):
    /// builds them once, seeds the corpora (target/fuzz/), runs each for
    /// its share of the time and prints a table; exits 1 on a crash,
    /// naming the saved input and how to replay it. Without --time, the
    /// whole step, build included, fits in 5 minutes (what CI runs).
    Fuzz(fuzz::Options),
    /// Write berthctl's man pages to target/man/.
    Man,
    /// Faults at random points of an apply (berthd SIGKILLed once or twice,
    /// the engine cut off, both), then checks that every deployment completes, one
    /// container per service, a no-op re-apply and growing event numbers.
    /// Prints a row per round; exits 1 if a round broke an invariant.
    Chaos {
        /// How many faulty applies (the faults take turns).
        #[arg(long, default_value_t = 12)]
        rounds: usize,
        /// Seed of the random delays (printed; replays a run's delays).
        #[arg(long)]
        seed: Option<u64>,
    },
    /// Benchmarks that print a table (never timed assertions).
    Bench {
        #[command(subcommand)]
        which: BenchCmd,
    },
}

#[derive(Debug, Subcommand)]
enum BenchCmd {
    /// Cold apply of 50 vs docker-compose, no-op re-apply of 200, one changed
    /// among 200, idle RSS with 200 services.
    Apply,
    /// Latency from a config write to the signal delivered / the container
    /// recreated (p50, p99 of 100), idle CPU and RSS with 200 services
    /// watching config.
    Config,
}

/// The workspace root (xtask lives one level below it).
pub fn workspace_root() -> PathBuf {
    let manifest_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest_dir.parent().unwrap_or(manifest_dir).to_path_buf()
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let root = workspace_root();
    let result = match cli.command {
        Cmd::Images { force, tag } => images::run(&root, &images::Options { tag, force }),
        Cmd::Tidy => tidy::run(&root),
        Cmd::Test { tier, args } => run::test(&root, tier, &args),
        Cmd::Schemathesis { args } => schemathesis::run(&root, &args),
        Cmd::Demo { once } => run::demo(&root, once),
        Cmd::Fuzz(opts) => fuzz::run(&root, &opts),
        Cmd::Man => run::man(&root),
        Cmd::Chaos { rounds, seed } => chaos::run(&root, rounds, seed),
        Cmd::Bench {
            which: BenchCmd::Apply,
        } => bench::apply(&root),
        Cmd::Bench {
            which: BenchCmd::Config,
        } => bench_config::config(&root),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    #[test]
    fn cli_is_well_formed() {
        super::Cli::command().debug_assert();
    }
}
