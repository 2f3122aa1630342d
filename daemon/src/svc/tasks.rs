//! `containerd.services.tasks.v1.Tasks`: containers run through the task manager
//! ([`crate::tasks`]): core's task table decides, `berth-shim` and runc carry out.

use std::sync::Arc;

use berth_api::any::to_any;
use berth_api::cgroups_v1 as cg;
use berth_api::runc::v1::{Options as RuncOptions, ProcessDetails};
use berth_api::services::tasks::v1::{tasks_server::Tasks, *};
use berth_api::task_types::{Process as WireProcess, ProcessInfo as WireInfo};
use berth_api::types::Metric;
use berth_core::metadata::Filter;
use berth_core::task::{Command, CreateTask as CoreCreate, ExecProcess, ProcessInfo, Reply, Stdio};
use prost::Message;
use tonic::{Request, Response, Status};

use crate::errors::status;
use crate::state::{namespace, timestamp, Daemon};
use crate::svc::snapshots::mount_from_proto;
use crate::tasks::CreateExtra;

/// The tasks service.
pub struct Service(pub Arc<Daemon>);

/// The zero time Go clients expect for "not exited" (0001-01-01).
fn zero_time() -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: -62_135_596_800,
        nanos: 0,
    }
}

fn wire(p: &ProcessInfo) -> WireProcess {
    WireProcess {
        container_id: p.container_id.clone(),
        id: p.id.clone(),
        pid: p.pid,
        status: p.status.wire(),
        stdin: p.stdio.stdin.clone(),
        stdout: p.stdio.stdout.clone(),
        stderr: p.stdio.stderr.clone(),
        terminal: p.stdio.terminal,
        exit_status: p.exit.map_or(0, |e| e.status),
        exited_at: Some(p.exit.map_or_else(zero_time, |e| timestamp(e.at))),
    }
}

fn deleted(d: berth_core::task::Deleted) -> DeleteResponse {
    DeleteResponse {
        id: d.id,
        pid: d.pid,
        exit_status: d.exit.map_or(0, |e| e.status),
        exited_at: Some(d.exit.map_or_else(zero_time, |e| timestamp(e.at))),
    }
}

fn unexpected(r: Reply) -> Status {
    Status::internal(format!("unexpected reply from the task table: {r:?}"))
}

/// The runtime binary a container or a create request names (runc options' `binary_name`).
fn runtime_binary(any: Option<&prost_types::Any>) -> Option<String> {
    let a = any?;
    if !a.type_url.ends_with("containerd.runc.v1.Options") {
        return None;
    }
    RuncOptions::decode(a.value.as_slice())
        .ok()
        .map(|o| o.binary_name)
        .filter(|b| !b.is_empty())
}

impl Service {
    async fn run(&self, ns: &str, cmd: Command) -> Result<Reply, Status> {
        self.0
            .tasks
            .command(&self.0, ns, cmd, CreateExtra::default())
            .await
    }
}

#[tonic::async_trait]
impl Tasks for Service {
    async fn create(
        &self,
        req: Request<CreateTaskRequest>,
    ) -> Result<Response<CreateTaskResponse>, Status> {
        let ns = namespace(&req)?;
        let r = req.into_inner();
        if r.checkpoint.is_some() {
            return Err(Status::unimplemented(
                "restoring from a checkpoint is not supported (CRIU does not work here)",
            ));
        }
        let container = self
            .0
            .store
            .container_get(&ns, &r.container_id)
            .map_err(status)?;
        let (spec, binary, mut rootfs) = match &container {
            Some(c) => {
                let spec = c
                    .spec
                    .as_ref()
                    .map(|s| s.value.clone())
                    .ok_or_else(|| Status::failed_precondition("the container has no spec"))?;
                let opts = c.runtime_options.as_ref().map(|o| prost_types::Any {
                    type_url: o.type_url.clone(),
                    value: o.value.clone(),
                });
                let binary = runtime_binary(r.options.as_ref()).or(runtime_binary(opts.as_ref()));
                let rootfs: Vec<_> = r.rootfs.iter().cloned().map(mount_from_proto).collect();
                let rootfs = if rootfs.is_empty() && !c.snapshot_key.is_empty() {
                    self.0
                        .snapshotters
                        .get(&c.snapshotter)?
                        .mounts(&ns, &c.snapshot_key)
                        .await?
                } else {
                    rootfs
                };
                (spec, binary, rootfs)
            }
            None => (Vec::new(), None, Vec::new()),
        };
        // the rootfs must be berthd's own snapshot mounts
        rootfs.retain(|m| !m.kind.is_empty());
        let bundle = self.0.tasks.runtime.bundle(&ns, &r.container_id);
        let cmd = Command::Create(CoreCreate {
            container_id: r.container_id.clone(),
            container_exists: container.is_some(),
            bundle: bundle.display().to_string(),
            rootfs,
            stdio: Stdio {
                stdin: r.stdin,
                stdout: r.stdout,
                stderr: r.stderr,
                terminal: r.terminal,
            },
        });
        let extra = CreateExtra {
            spec,
            runtime: binary,
        };
        match self.0.tasks.command(&self.0, &ns, cmd, extra).await? {
            Reply::Created { pid } => Ok(Response::new(CreateTaskResponse {
                container_id: r.container_id,
                pid,
            })),
            other => Err(unexpected(other)),
        }
    }

    async fn start(&self, req: Request<StartRequest>) -> Result<Response<StartResponse>, Status> {
        let ns = namespace(&req)?;
        let r = req.into_inner();
        let cmd = Command::Start {
            container_id: r.container_id,
            exec_id: r.exec_id,
        };
        match self.run(&ns, cmd).await? {
            Reply::Started { pid } => Ok(Response::new(StartResponse { pid })),
            other => Err(unexpected(other)),
        }
    }

    async fn delete(
        &self,
        req: Request<DeleteTaskRequest>,
    ) -> Result<Response<DeleteResponse>, Status> {
        let ns = namespace(&req)?;
        let id = req.into_inner().container_id;
        let cmd = Command::Delete { container_id: id };
        match self.run(&ns, cmd).await? {
            Reply::Deleted(d) => Ok(Response::new(deleted(d))),
            other => Err(unexpected(other)),
        }
    }

    async fn delete_process(
        &self,
        req: Request<DeleteProcessRequest>,
    ) -> Result<Response<DeleteResponse>, Status> {
        let ns = namespace(&req)?;
        let r = req.into_inner();
        let cmd = Command::DeleteProcess {
            container_id: r.container_id,
            exec_id: r.exec_id,
        };
        match self.run(&ns, cmd).await? {
            Reply::Deleted(d) => Ok(Response::new(deleted(d))),
            other => Err(unexpected(other)),
        }
    }

    async fn get(&self, req: Request<GetRequest>) -> Result<Response<GetResponse>, Status> {
        let ns = namespace(&req)?;
        let r = req.into_inner();
        let cmd = Command::Get {
            container_id: r.container_id,
            exec_id: r.exec_id,
        };
        match self.run(&ns, cmd).await? {
            Reply::Process(p) => Ok(Response::new(GetResponse {
                process: Some(wire(&p)),
            })),
            other => Err(unexpected(other)),
        }
    }

    async fn list(
        &self,
        req: Request<ListTasksRequest>,
    ) -> Result<Response<ListTasksResponse>, Status> {
        let ns = namespace(&req)?;
        let filter = Filter::parse(&[req.get_ref().filter.clone()]).map_err(status)?;
        match self.run(&ns, Command::List).await? {
            Reply::List(list) => Ok(Response::new(ListTasksResponse {
                tasks: list
                    .iter()
                    .filter(|p| {
                        filter.matches(|f| match f {
                            [k] if k == "id" || k == "container_id" => Some(p.container_id.clone()),
                            [k] if k == "status" => Some(p.status.name().to_string()),
                            _ => None,
                        })
                    })
                    .map(wire)
                    .collect(),
            })),
            other => Err(unexpected(other)),
        }
    }

    async fn kill(&self, req: Request<KillRequest>) -> Result<Response<()>, Status> {
        let ns = namespace(&req)?;
        let r = req.into_inner();
        let cmd = Command::Kill {
            container_id: r.container_id,
            exec_id: r.exec_id,
            signal: r.signal,
            all: r.all,
        };
        self.run(&ns, cmd).await?;
        Ok(Response::new(()))
    }

    async fn exec(&self, req: Request<ExecProcessRequest>) -> Result<Response<()>, Status> {
        let ns = namespace(&req)?;
        let r = req.into_inner();
        let spec = r
            .spec
            .map(|s| s.value)
            .ok_or_else(|| Status::invalid_argument("exec needs a process spec"))?;
        let cmd = Command::Exec(ExecProcess {
            container_id: r.container_id,
            exec_id: r.exec_id,
            stdio: Stdio {
                stdin: r.stdin,
                stdout: r.stdout,
                stderr: r.stderr,
                terminal: r.terminal,
            },
            spec,
        });
        self.run(&ns, cmd).await?;
        Ok(Response::new(()))
    }

    async fn resize_pty(&self, req: Request<ResizePtyRequest>) -> Result<Response<()>, Status> {
        let ns = namespace(&req)?;
        let r = req.into_inner();
        let cmd = Command::ResizePty {
            container_id: r.container_id,
            exec_id: r.exec_id,
            width: r.width,
            height: r.height,
        };
        self.run(&ns, cmd).await?;
        Ok(Response::new(()))
    }

    async fn close_io(&self, req: Request<CloseIoRequest>) -> Result<Response<()>, Status> {
        let ns = namespace(&req)?;
        let r = req.into_inner();
        let cmd = Command::CloseIo {
            container_id: r.container_id,
            exec_id: r.exec_id,
            stdin: r.stdin,
        };
        self.run(&ns, cmd).await?;
        Ok(Response::new(()))
    }

    async fn pause(&self, req: Request<PauseTaskRequest>) -> Result<Response<()>, Status> {
        let ns = namespace(&req)?;
        let cmd = Command::Pause {
            container_id: req.into_inner().container_id,
        };
        self.run(&ns, cmd).await?;
        Ok(Response::new(()))
    }

    async fn resume(&self, req: Request<ResumeTaskRequest>) -> Result<Response<()>, Status> {
        let ns = namespace(&req)?;
        let cmd = Command::Resume {
            container_id: req.into_inner().container_id,
        };
        self.run(&ns, cmd).await?;
        Ok(Response::new(()))
    }

    async fn list_pids(
        &self,
        req: Request<ListPidsRequest>,
    ) -> Result<Response<ListPidsResponse>, Status> {
        let ns = namespace(&req)?;
        let id = req.into_inner().container_id;
        // the task must exist in the table
        self.run(
            &ns,
            Command::Get {
                container_id: id.clone(),
                exec_id: String::new(),
            },
        )
        .await?;
        let tasks = self.0.tasks.clone();
        let pids = blocking::unblock(move || tasks.runtime.pids(&ns, &id))
            .await
            .map_err(|e| Status::internal(e.to_string()))?;
        Ok(Response::new(ListPidsResponse {
            processes: pids
                .into_iter()
                .map(|p| WireInfo {
                    pid: p.pid,
                    info: p.exec_id.map(|exec_id| to_any(&ProcessDetails { exec_id })),
                })
                .collect(),
        }))
    }

    async fn checkpoint(
        &self,
        _req: Request<CheckpointTaskRequest>,
    ) -> Result<Response<CheckpointTaskResponse>, Status> {
        Err(Status::unimplemented(
            "checkpoint needs CRIU, which does not work on this kernel; berth does not offer it yet",
        ))
    }

    async fn update(&self, req: Request<UpdateTaskRequest>) -> Result<Response<()>, Status> {
        let ns = namespace(&req)?;
        let r = req.into_inner();
        let Some(resources) = r.resources else {
            return Ok(Response::new(()));
        };
        let tasks = self.0.tasks.clone();
        let id = r.container_id;
        blocking::unblock(move || tasks.runtime.update(&ns, &id, &resources.value))
            .await
            .map_err(|e| Status::internal(e.to_string()))?;
        Ok(Response::new(()))
    }

    async fn metrics(
        &self,
        req: Request<MetricsRequest>,
    ) -> Result<Response<MetricsResponse>, Status> {
        let ns = namespace(&req)?;
        let filter = Filter::parse(&req.get_ref().filters).map_err(status)?;
        let Reply::List(list) = self.run(&ns, Command::List).await? else {
            return Err(Status::internal("unexpected reply"));
        };
        let mut metrics = Vec::new();
        for p in list.iter().filter(|p| {
            filter.matches(|f| match f {
                [k] if k == "id" => Some(p.container_id.clone()),
                _ => None,
            })
        }) {
            let (tasks, n, id) = (self.0.tasks.clone(), ns.clone(), p.container_id.clone());
            let Ok(m) = blocking::unblock(move || tasks.runtime.metrics(&n, &id)).await else {
                continue;
            };
            let data = cg::Metrics {
                pids: Some(cg::PidsStat {
                    current: m.pids.current,
                    limit: m.pids.limit,
                }),
                cpu: Some(cg::CpuStat {
                    usage: Some(cg::CpuUsage {
                        total: m.cpu.total,
                        kernel: m.cpu.kernel,
                        user: m.cpu.user,
                        per_cpu: m.cpu.per_cpu.clone(),
                    }),
                    throttling: None,
                }),
                memory: Some(cg::MemoryStat {
                    usage: Some(cg::MemoryEntry {
                        limit: m.memory.limit,
                        usage: m.memory.usage,
                        max: m.memory.max_usage,
                        failcnt: m.memory.failcnt,
                    }),
                    ..Default::default()
                }),
            };
            metrics.push(Metric {
                timestamp: Some(timestamp(self.0.now())),
                id: p.container_id.clone(),
                data: Some(to_any(&data)),
            });
        }
        Ok(Response::new(MetricsResponse { metrics }))
    }

    async fn wait(&self, req: Request<WaitRequest>) -> Result<Response<WaitResponse>, Status> {
        let ns = namespace(&req)?;
        let r = req.into_inner();
        let cmd = Command::Wait {
            container_id: r.container_id,
            exec_id: r.exec_id,
        };
        match self.run(&ns, cmd).await? {
            Reply::Exited(e) => Ok(Response::new(WaitResponse {
                exit_status: e.status,
                exited_at: Some(timestamp(e.at)),
            })),
            other => Err(unexpected(other)),
        }
    }
}
