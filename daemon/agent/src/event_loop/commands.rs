//! The loop's inbox: each `Command` from the API (apply, verbs, spec_dir,
//! records) routed to the file that handles it. Decides nothing itself.

use berth_core::record::Deployment;
use berth_core::runtime::Runtime;
use berth_core::store::Store;

use super::Agent;
use crate::{AgentError, Command, Env, Verb};

impl<E: Env> Agent<E> {
    pub(super) fn handle_command(&mut self, cmd: Command) {
        // A read changes nothing. Marked dirty, it would publish a snapshot,
        // which wakes `Handle::wait_deployment`, which reads again: a spin
        // for as long as the deployment runs.
        if !matches!(
            cmd,
            Command::Deployment { .. }
                | Command::History { .. }
                | Command::Logs { .. }
                | Command::Images { .. }
                | Command::AdoptCheck { .. }
        ) {
            self.dirty = true;
        }
        match cmd {
            Command::Apply {
                req,
                source,
                actor,
                dry_run,
                reply,
            } => self.begin_apply(req, source, actor, dry_run, reply),
            // Said so, not "no service named": the service is there, berthd
            // just cannot read its record.
            Command::Verb { service, reply, .. } if self.unreadable.contains_key(&service) => {
                let _ = reply.send(Err(self.unreadable_refusal(&service)));
            }
            Command::Verb {
                service,
                verb: Verb::ClearHook { phase },
                actor,
                reply,
            } => {
                let _ = reply.send(self.clear_hook(&service, phase, &actor));
            }
            Command::Verb {
                service,
                verb: Verb::Reconfigure,
                actor,
                reply,
            } => self.request_reconfigure(&service, actor, reply),
            Command::Verb {
                service,
                verb,
                actor,
                reply,
            } => {
                let r = self.verb(&service, verb, &actor);
                let _ = reply.send(r);
            }
            Command::History {
                service,
                limit,
                reply,
            } => {
                let r = if !self.services.contains_key(&service)
                    && !self.unreadable.contains_key(&service)
                {
                    Err(AgentError::NoSuchService { service })
                } else {
                    self.env
                        .store()
                        .history(&service, limit)
                        .map(|v| v.iter().map(Deployment::redacted).collect())
                        .map_err(AgentError::from)
                };
                let _ = reply.send(r);
            }
            Command::Deployment { id, reply } => {
                let _ = reply.send(self.find_deployment(&id));
            }
            Command::Logs {
                service,
                opts,
                reply,
            } => {
                let r = match self.container_of(&service) {
                    Some(c) => Ok(self.env.runtime().logs(&c.id, opts)),
                    None if self.services.contains_key(&service) => Err(AgentError::Refused {
                        service,
                        reason: "has no container".into(),
                    }),
                    None if self.unreadable.contains_key(&service) => {
                        Err(self.unreadable_refusal(&service))
                    }
                    None => Err(AgentError::NoSuchService { service }),
                };
                let _ = reply.send(r);
            }
            Command::Emit { kind } => self.emit(kind),
            Command::Images { reply } => self.list_images(reply),
            Command::PruneImages {
                dry_run,
                actor,
                reply,
            } => self.request_prune(dry_run, &actor, reply),
            Command::AdoptCheck {
                from,
                config_id,
                reply,
            } => {
                // Listing and inspecting every such container takes a
                // while on a full node: off the loop.
                let env = std::sync::Arc::clone(&self.env);
                tokio::spawn(async move {
                    let r = env
                        .runtime()
                        .list_foreign()
                        .await
                        .map(|all| berth_core::adopt::report(&all, from, config_id.as_deref()))
                        .map_err(AgentError::from);
                    let _ = reply.send(r);
                });
            }
            Command::SpecDir { files, reply } => {
                let problems = self.spec_dir(files);
                let _ = reply.send(Ok(problems));
            }
        }
    }

    pub(super) fn find_deployment(&self, id: &str) -> Result<Deployment, AgentError> {
        let not_found = || AgentError::NoSuchDeployment { id: id.to_string() };
        let (service, generation) = id.rsplit_once('-').ok_or_else(not_found)?;
        let generation: u64 = generation.parse().map_err(|_| not_found())?;
        if let Some(svc) = self.services.get(service)
            && svc.current.generation == generation
        {
            return Ok(svc.current.redacted());
        }
        if !berth_core::spec::valid_service_name(service) {
            return Err(not_found());
        }
        match self.env.store().record(service, generation)? {
            Some(d) => Ok(d.redacted()),
            None => Err(not_found()),
        }
    }
}
