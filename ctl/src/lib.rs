//! berthctl: the operator's command line for berthd, a client of its local
//! HTTP/JSON API on a Unix socket.
//!
//! [`command`] is the whole clap definition (man pages and completions are
//! generated from it); [`main`] parses, runs one verb and maps its error to an
//! exit code.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, CommandFactory, Parser, Subcommand};

pub mod client;
pub mod commands;
pub mod error;
pub mod output;
pub mod progress;
pub mod specs;
pub mod sse;
pub mod wait;

use client::{Client, DEFAULT_SOCKET};
use commands::apply::{ApplyArgs, CheckArgs, DiffArgs};
use commands::events::EventsArgs;
use commands::logs::LogsArgs;
use commands::status::{HistoryArgs, NameArgs};
use commands::upstream::{OutboxCmd, PushArgs};
use commands::verbs::{DeleteArgs, RecordVerbArgs, RollbackArgs, Verb as ServiceVerb};
use error::CliResult;

const EXIT_CODES: &str = "\
Exit codes:
  0  success
  1  the operation failed: a deployment ended FAILED or ROLLED_BACK, a wait timed
     out, berthd answered with an error, or berthd could not be reached
  2  usage or validation error: bad arguments, invalid spec files, or berthd
     refused the request as invalid or conflicting (HTTP 400, 409, 422)
  3  a deployment waited for stopped at a breakpoint hook (WAITING_HOOK) and
     none failed or timed out: stderr names each `berthctl hook clear SERVICE
     PHASE` that lets one go on; berthd keeps it waiting meanwhile

Waiting:
  Verbs that create a deployment record (apply, rollback, restart, reconfigure,
  stop, start, delete) wait until it is COMPLETE, FAILED or ROLLED_BACK, up to
  --timeout (default 5m), or until it waits at a breakpoint hook (exit 3).
  --wait-hooks waits through breakpoints until someone clears them; a running
  exec or http hook is waited for either way. --no-wait returns as soon as
  berthd has recorded the change.

Environment:
  BERTH_SOCKET  the berthd socket, like --socket (default /run/berth/berth.sock)

berthctl prints no colors. Times are UTC.";

/// Drive berthd, the berth node agent, over its local socket.
///
/// berthd keeps one container per service and a record of every deployment.
/// berthctl shows that state (status, show, history, logs, events) and asks
/// for changes (apply, rollback, restart, stop, start, hold, release, delete).
///
/// Examples:
///   berthctl status
///   berthctl apply /etc/berth/services.d/web.yaml
///   berthctl show web
///   berthctl --json status | jq '.services[].name'
#[derive(Debug, Parser)]
#[command(
    name = "berthctl",
    version,
    verbatim_doc_comment,
    after_help = EXIT_CODES,
    propagate_version = true
)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub verb: Verb,
}

#[derive(Debug, Clone, Args)]
pub struct GlobalArgs {
    /// berthd's API socket.
    #[arg(
        long,
        global = true,
        env = "BERTH_SOCKET",
        value_name = "PATH",
        default_value = DEFAULT_SOCKET
    )]
    pub socket: PathBuf,

    /// Print the API's JSON (the same objects berthd returns) and nothing else
    /// on stdout.
    #[arg(long, global = true)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum Verb {
    /// Show every service: container state, health, current deployment.
    ///
    /// One line per service with its container state (`missing` when there is
    /// no container), health, restart count, the current deployment's
    /// generation and status, when it last changed, and the image. The NOTES
    /// column flags services that are held, crash-looping, meant to be stopped,
    /// tasks, or whose record cannot be read. The header names the node, says
    /// whether the container engine is reachable, and sums up the services.
    ///
    /// Examples:
    ///   berthctl status
    ///   berthctl status --json
    #[command(verbatim_doc_comment)]
    Status,

    /// Show one service and its current deployment in full.
    ///
    /// The status line of `berthctl status`, plus the current deployment
    /// record: id, generation, action, status and reason, actor, owner, spec
    /// hash, the spec itself (secrets redacted by berthd) and the deployment's
    /// outputs (deploy_stdout, deploy_stderr, deploy_status_code and declared
    /// outputs).
    ///
    /// Examples:
    ///   berthctl show web
    ///   berthctl show web --json | jq .current.spec
    #[command(verbatim_doc_comment)]
    Show(NameArgs),

    /// List a service's deployments, newest first.
    ///
    /// Examples:
    ///   berthctl history web
    ///   berthctl history web --limit 5
    #[command(verbatim_doc_comment)]
    History(HistoryArgs),

    /// Apply service files: create or update services, then wait for them.
    ///
    /// Each FILE is a YAML or JSON service file (one service, or a list under
    /// `services:`); a DIR stands for its *.yaml, *.yml and *.json files,
    /// sorted, not recursive. Every file is parsed and checked before berthd is
    /// contacted: any error is printed as FILE:LINE:COL: FIELD: MESSAGE and
    /// nothing is applied (exit 2). Relative paths in `image: {build: ...}` and
    /// `image: {load: ...}` are taken relative to the spec file's directory.
    /// A service may be declared in one file only.
    ///
    /// berthd validates all services before changing any. For each service
    /// berthctl prints what happened (created, updated with the changed fields,
    /// policy-only, unchanged), then waits for every new deployment to finish
    /// and prints its final status. It exits 1 if any deployment failed or
    /// is still running when --timeout passes.
    ///
    /// Hooks: an update whose spec has `hooks: {pre_update: [...]}` is
    /// WAITING_HOOK while they run. A running exec or http hook is waited
    /// for. A `breakpoint` waits until someone clears it: apply stops waiting
    /// there (once every other deployment has ended) and exits 3, printing
    /// the service, the phase and the `berthctl hook clear SERVICE PHASE`
    /// that lets it go on; with --json, the output's `breakpoints` lists them
    /// (service, deployment, phase, index, hook, since_ms, clear). berthd
    /// keeps the deployment waiting; --wait-hooks keeps apply waiting too.
    /// A failure or a timeout outranks a breakpoint (exit 1).
    ///
    /// Examples:
    ///   berthctl apply web.yaml
    ///   berthctl apply /etc/berth/services.d --timeout 10m
    ///   berthctl apply web.yaml --no-wait
    ///   berthctl apply web.yaml --force    # take over a service another source owns
    ///
    ///   berthctl apply web.yaml            # exit 3: web waits at its pre_update breakpoint
    ///   berthctl hook clear web pre_update # (workloads moved away) let the update go on
    ///   berthctl history web --limit 1     # COMPLETE, or IN_PROGRESS for a while
    ///
    ///   berthctl apply web.yaml --wait-hooks --timeout 1h   # wait until someone clears it
    ///   berthctl apply --json web.yaml | jq -r '.breakpoints[].clear'
    #[command(verbatim_doc_comment)]
    Apply(ApplyArgs),

    /// Show what `apply` would change, without changing anything.
    ///
    /// Reads files like `apply` and asks berthd for a dry run: for each service
    /// whether it would be created, updated or left unchanged, and which fields
    /// differ (old -> new).
    ///
    /// Examples:
    ///   berthctl diff web.yaml
    ///   berthctl diff /etc/berth/services.d
    #[command(verbatim_doc_comment)]
    Diff(DiffArgs),

    /// Check service files without contacting berthd.
    ///
    /// Parses and validates like `apply` and prints `ok: N services in M files`,
    /// or every error as FILE:LINE:COL: FIELD: MESSAGE (exit 2). With --json,
    /// prints the request `apply` would send.
    ///
    /// Examples:
    ///   berthctl check web.yaml
    ///   berthctl check /etc/berth/services.d
    #[command(verbatim_doc_comment)]
    Check(CheckArgs),

    /// Turn a TripleO node's container files into berth service files:
    /// paunch configs, tripleo_container_manage's step tree, Heat docker-cmd
    /// deployments.
    ///
    /// Reads the files without contacting berthd and writes one
    /// <service>.yaml per container into -o DIR, keeping paunch's meaning:
    /// steps and start_order become depends_on, `detach: false` a task,
    /// TRIPLEO_CONFIG_HASH is dropped and each puppet-generated mount becomes
    /// a watched config source. Every key without a berth equivalent is a
    /// warning naming the file, the container and the key (and a comment in
    /// the written file); an error in any file writes nothing (exit 2).
    /// Importing the same files twice writes the same bytes.
    ///
    /// Examples:
    ///   berthctl import tripleo /var/lib/tripleo-config/container-startup-config -o services.d
    ///   berthctl import paunch keystone-step_3.json --check
    ///   berthctl import heat deployment.json -o services.d --image-map '*=berth-demo:latest'
    ///   berthctl check services.d && berthctl apply services.d
    #[command(verbatim_doc_comment)]
    Import {
        #[command(subcommand)]
        cmd: commands::import::ImportCmd,
    },

    /// Go back to an earlier deployment's spec.
    ///
    /// Without --to, rolls back to the deployment before the current one.
    /// Makes a new ROLLBACK deployment and waits for it (see --no-wait).
    ///
    /// Examples:
    ///   berthctl rollback web
    ///   berthctl rollback web --to 3
    #[command(verbatim_doc_comment)]
    Rollback(RollbackArgs),

    /// Upstream signals waiting in the outbox: list, retry, drop.
    ///
    /// Every outcome berthd signals back to an orchestrator (Heat's
    /// deploy_signal_* inputs) goes through a durable outbox, so no signal is
    /// lost while the receiver is down or berthd restarts.
    ///
    /// Examples:
    ///   berthctl outbox list
    ///   berthctl outbox retry 7
    ///   berthctl outbox drop 7
    #[command(verbatim_doc_comment)]
    Outbox {
        #[command(subcommand)]
        cmd: OutboxCmd,
    },

    /// Hooks a deployment waits on: list them, clear breakpoints.
    ///
    /// A spec's `hooks:` run around its updates and deletes: `pre_update`
    /// before an update stops or sets aside the running container,
    /// `post_update` once the new one is judged COMPLETE, `pre_delete`
    /// before a delete removes anything; meanwhile the deployment is
    /// WAITING_HOOK. A `breakpoint` hook waits until cleared. A verb that
    /// waits for its deployment (apply, rollback, delete, ...) stops at a
    /// breakpoint with exit 3, naming the `hook clear` to run; --wait-hooks
    /// waits on.
    ///
    /// Examples:
    ///   berthctl hook list
    ///   berthctl hook clear web pre_update
    ///   berthctl delete web; berthctl hook clear web pre_delete
    #[command(verbatim_doc_comment)]
    Hook {
        #[command(subcommand)]
        cmd: commands::hooks::HookCmd,
    },

    /// Deploy a Heat software-deployment document (JSON, group: berth), as an
    /// orchestrator pushes it to POST /v1/deployments.
    ///
    /// The document's config is one berth spec or a list of them; its other
    /// inputs reach every service as BERTH_INPUT_<NAME>. The same id and body
    /// again applies nothing; the outcome is signalled back through the
    /// outbox when every deployment has ended.
    ///
    /// Examples:
    ///   berthctl push deployment.json
    ///   berthctl push deployment.json --json | jq .deployments
    #[command(verbatim_doc_comment)]
    Push(PushArgs),

    /// Restart a service's container.
    ///
    /// Examples:
    ///   berthctl restart web
    ///   berthctl restart web --no-wait
    #[command(verbatim_doc_comment)]
    Restart(RecordVerbArgs),

    /// Re-read a service's config sources and apply each source's on_change
    /// (restart, recreate, signal, exec), whether the content changed or not.
    ///
    /// berthd does this by itself when a config file's content changes; use
    /// this after fixing something outside the files (e.g. a reload that
    /// failed for another reason). Makes a RECONFIGURE deployment and waits
    /// for it (see --no-wait). `berthctl show NAME` lists the sources.
    ///
    /// Examples:
    ///   berthctl reconfigure web
    ///   berthctl reconfigure web --json
    #[command(verbatim_doc_comment)]
    Reconfigure(RecordVerbArgs),

    /// Stop a service and keep it stopped.
    ///
    /// Makes a STOP deployment; the service stays stopped until `start` or an
    /// apply that says otherwise.
    ///
    /// Examples:
    ///   berthctl stop web
    #[command(verbatim_doc_comment)]
    Stop(RecordVerbArgs),

    /// Start a stopped service.
    ///
    /// Examples:
    ///   berthctl start web
    #[command(verbatim_doc_comment)]
    Start(RecordVerbArgs),

    /// Hold a service: berthd leaves it alone until it is released.
    ///
    /// A held service is not reconciled: berthd does not restart, recreate or
    /// update its container. Use it to debug a container by hand.
    ///
    /// Examples:
    ///   berthctl hold web
    #[command(verbatim_doc_comment)]
    Hold(NameArgs),

    /// Release a held service: berthd manages it again.
    ///
    /// Examples:
    ///   berthctl release web
    #[command(verbatim_doc_comment)]
    Release(NameArgs),

    /// Delete a service: remove its container and stop managing it.
    ///
    /// Its named volumes are kept unless --volumes is given; even then only
    /// those berth created for this node that no other service mounts are
    /// removed, and the answer names what was removed and what was kept.
    ///
    /// Examples:
    ///   berthctl delete web
    ///   berthctl delete web --volumes
    #[command(verbatim_doc_comment)]
    Delete(DeleteArgs),

    /// Print a service's container logs (stdout and stderr).
    ///
    /// With --json, each line is printed as a JSON string on its own line.
    ///
    /// Examples:
    ///   berthctl logs web --tail 100
    ///   berthctl logs web -f
    #[command(verbatim_doc_comment)]
    Logs(LogsArgs),

    /// Report which containers paunch, TripleO or docker-cmd started berth could take over.
    ///
    /// A node deployed by TripleO runs containers that paunch,
    /// tripleo_ansible (tripleo_container_manage) or Heat's docker-cmd hook
    /// started. berth finds them by their labels (managed_by, config_id,
    /// container_name; never a container with a berth label) and compares
    /// each with what its config says (the config_data label, converted as
    /// `berthctl import` converts it): the image, command, env, volumes,
    /// network, restart policy and every other field of the create call,
    /// TRIPLEO_CONFIG_HASH left out, and what the engine or the image
    /// filled in (the image's env, cmd and entrypoint where the config set
    /// none, the engine's hostname, ...) not counted as a difference.
    ///
    /// Each container is reported as: would adopt (it matches: berth could
    /// take it over without a restart), differs (each field with what the
    /// config says and what the container has; left alone), or cannot be
    /// judged (its config_data unreadable; docker-cmd containers, whose
    /// config is the Heat metadata, are not read yet). Where a
    /// tripleo_<name>.service unit runs the container, hand it over first.
    ///
    /// Only --check exists yet: it changes nothing. Taking over (without
    /// --check) and --replace are not implemented; berthctl says so.
    ///
    /// Examples:
    ///   berthctl adopt --from paunch --check
    ///   berthctl adopt --from tripleo --config-id tripleo_step4 --check
    ///   berthctl adopt --from paunch --check --json | jq -r '.containers[] | select(.verdict == "differs") | .name'
    #[command(verbatim_doc_comment)]
    Adopt(commands::adopt::AdoptArgs),

    /// List the images berth knows, who uses them, and what a prune removes.
    ///
    /// One row per image berth pulled or built, or that a record of the
    /// current and last `keep_previous` generations of a service names: its
    /// id (short), reference, digest, ORIGIN (pulled: berth pulled it and a
    /// prune may remove it; built: built by berth from a context; other:
    /// loaded or in the engine before berth needed it, never removed by
    /// berth), USED BY (services whose container runs it), RECORDS (service-
    /// generation of the kept records naming it), PRUNABLE and WHY.
    ///
    /// A pulled image is prunable when no kept record of any service names
    /// it and no container of berth's runs it. berthd prunes by itself after
    /// each deployment of a service whose image is a reference ends;
    /// `images prune` does it now. `[images] keep_previous` in berthd.toml
    /// (default 2) sets how many previous generations keep their images, so
    /// `berthctl rollback` finds them locally.
    ///
    /// Examples:
    ///   berthctl images
    ///   berthctl images --json | jq -r '.images[] | select(.prunable) | .id'
    ///   berthctl images prune --dry-run
    ///   berthctl images prune
    #[command(verbatim_doc_comment)]
    Images {
        #[command(subcommand)]
        cmd: Option<commands::images::ImagesCmd>,
    },

    /// Print berthd's events: deployments, container actions, engine state.
    ///
    /// Each line is SEQ  TIME  SUMMARY (TIME in UTC). --follow keeps printing
    /// new events as they happen; if berthd dropped events berthctl has not
    /// seen, a warning goes to stderr. With --json, prints the API's response,
    /// or with --follow one JSON event per line.
    ///
    /// Examples:
    ///   berthctl events
    ///   berthctl events --since 120
    ///   berthctl events -f
    #[command(verbatim_doc_comment)]
    Events(EventsArgs),

    /// Print a shell completion script.
    ///
    /// Examples:
    ///   berthctl completions bash > /etc/bash_completion.d/berthctl
    ///   berthctl completions zsh > "${fpath[1]}/_berthctl"
    ///   berthctl completions fish > ~/.config/fish/completions/berthctl.fish
    #[command(verbatim_doc_comment)]
    Completions(CompletionsArgs),
}

#[derive(Debug, Clone, Args)]
pub struct CompletionsArgs {
    /// The shell to complete for.
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

/// The full clap definition (for man pages and completions).
pub fn command() -> clap::Command {
    Cli::command()
}

/// What every verb gets.
#[derive(Debug, Clone)]
pub struct Ctx {
    pub client: Client,
    pub json: bool,
}

/// Parses the process arguments, runs the verb, returns the exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprint!("{}", e.render());
            ExitCode::from(e.exit_code())
        }
    }
}

/// Runs one parsed command line.
pub async fn run(cli: Cli) -> CliResult {
    let ctx = Ctx {
        client: Client::new(cli.global.socket),
        json: cli.global.json,
    };
    use commands::{apply, events, logs, status, verbs};
    match cli.verb {
        Verb::Status => status::cmd_status(&ctx).await,
        Verb::Show(a) => status::cmd_show(&ctx, &a).await,
        Verb::History(a) => status::cmd_history(&ctx, &a).await,
        Verb::Apply(a) => apply::cmd_apply(&ctx, &a).await,
        Verb::Diff(a) => apply::cmd_diff(&ctx, &a).await,
        Verb::Check(a) => apply::cmd_check(&ctx, &a),
        Verb::Import { cmd } => commands::import::cmd_import(&ctx, &cmd),
        Verb::Rollback(a) => {
            let verb = ServiceVerb::Rollback(a.to);
            verbs::cmd_verb(&ctx, &a.name, verb, Some(&a.wait)).await
        }
        Verb::Restart(a) => {
            verbs::cmd_verb(&ctx, &a.name, ServiceVerb::Restart, Some(&a.wait)).await
        }
        Verb::Reconfigure(a) => {
            verbs::cmd_verb(&ctx, &a.name, ServiceVerb::Reconfigure, Some(&a.wait)).await
        }
        Verb::Stop(a) => verbs::cmd_verb(&ctx, &a.name, ServiceVerb::Stop, Some(&a.wait)).await,
        Verb::Start(a) => verbs::cmd_verb(&ctx, &a.name, ServiceVerb::Start, Some(&a.wait)).await,
        Verb::Delete(a) => {
            let verb = ServiceVerb::Delete { volumes: a.volumes };
            verbs::cmd_verb(&ctx, &a.name, verb, Some(&a.wait)).await
        }
        Verb::Hold(a) => verbs::cmd_verb(&ctx, &a.name, ServiceVerb::Hold, None).await,
        Verb::Release(a) => verbs::cmd_verb(&ctx, &a.name, ServiceVerb::Release, None).await,
        Verb::Logs(a) => logs::cmd_logs(&ctx, &a).await,
        Verb::Outbox { cmd } => commands::upstream::cmd_outbox(&ctx, &cmd).await,
        Verb::Push(a) => commands::upstream::cmd_push(&ctx, &a).await,
        Verb::Hook { cmd } => commands::hooks::cmd_hook(&ctx, &cmd).await,
        Verb::Events(a) => events::cmd_events(&ctx, &a).await,
        Verb::Images { cmd } => commands::images::cmd_images(&ctx, cmd.as_ref()).await,
        Verb::Adopt(a) => commands::adopt::cmd_adopt(&ctx, &a).await,
        Verb::Completions(a) => {
            let mut buf = Vec::new();
            clap_complete::generate(a.shell, &mut command(), "berthctl", &mut buf);
            output::bytes(&buf)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clap_definition_is_consistent() {
        command().debug_assert();
    }

    #[test]
    fn every_verb_has_help_and_examples() {
        let cmd = command();
        for sub in cmd.get_subcommands() {
            let name = sub.get_name();
            if name == "help" {
                continue;
            }
            assert!(sub.get_about().is_some(), "{name} has no about");
            let long = sub
                .get_long_about()
                .map(ToString::to_string)
                .unwrap_or_default();
            assert!(long.contains("Examples:"), "{name} has no examples");
        }
    }

    #[test]
    fn global_flags_go_anywhere() {
        let cli = Cli::try_parse_from(["berthctl", "status", "--json", "--socket", "/tmp/s"]);
        let cli = cli.map_err(|e| e.to_string());
        assert!(matches!(
            cli,
            Ok(Cli { global: GlobalArgs { json: true, ref socket }, verb: Verb::Status })
                if socket == &PathBuf::from("/tmp/s")
        ));
    }

    #[test]
    fn wait_flags() {
        let parsed =
            Cli::try_parse_from(["berthctl", "stop", "web", "--no-wait", "--timeout", "90s"]);
        match parsed {
            Ok(Cli {
                verb: Verb::Stop(a),
                ..
            }) => {
                assert!(a.wait.no_wait);
                assert_eq!(a.wait.timeout, std::time::Duration::from_secs(90));
            }
            other => panic!("unexpected parse: {other:?}"),
        }
        assert!(Cli::try_parse_from(["berthctl", "stop", "web", "--timeout", "90"]).is_err());
        assert!(Cli::try_parse_from(["berthctl", "stop", "Bad/Name"]).is_err());
    }
}
