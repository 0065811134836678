//! The channel on Windows: a named pipe of this user's alone,
//! `\\.\pipe\certagent-<the user's SID in hex>`, made by the agent as the
//! name's first instance (a squatter's pipe makes the agent fail to start,
//! never serve through it), remote clients rejected, and every client's
//! process (`GetNamedPipeClientProcessId`) required to run as the agent's
//! user SID, as the TCP caller check requires (`peer/windows.rs`).

use std::io::{Read, Write};
use std::os::windows::io::AsRawHandle;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::windows::named_pipe::{NamedPipeServer, ServerOptions};
use tokio::sync::{Semaphore, oneshot};
use windows_sys::Win32::System::Pipes::GetNamedPipeClientProcessId;

use super::{AskError, MAX_REPLY};
use crate::agent::api::peer::windows::{own_sid, sid_of_process};
use crate::agent::shared::Agent;

const CONCURRENT: usize = 16;

/// This user's pipe name.
pub fn address() -> std::io::Result<PathBuf> {
    let sid = own_sid().ok_or_else(|| std::io::Error::other("this user's SID cannot be read"))?;
    let hex: String = sid.iter().map(|b| format!("{b:02x}")).collect();
    Ok(PathBuf::from(format!(r"\\.\pipe\certagent-{hex}")))
}

pub struct RunningChannel {
    path: PathBuf,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl RunningChannel {
    pub fn path(&self) -> &Path {
        &self.path
    }

    pub async fn shutdown(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        let _ = (&mut self.task).await;
    }
}

fn instance(name: &Path, first: bool) -> std::io::Result<NamedPipeServer> {
    ServerOptions::new()
        .first_pipe_instance(first)
        .reject_remote_clients(true)
        .create(name)
}

/// Whether the client on `pipe` runs as this user.
fn own_client(pipe: &NamedPipeServer, me: &[u8]) -> bool {
    let mut pid = 0u32;
    // SAFETY: a live pipe handle; `pid` is written.
    let ok = unsafe { GetNamedPipeClientProcessId(pipe.as_raw_handle(), &mut pid) } != 0;
    ok && pid != 0 && sid_of_process(pid).is_some_and(|s| s == me)
}

pub async fn serve(agent: Arc<Agent>, path: PathBuf) -> std::io::Result<RunningChannel> {
    let me = own_sid().ok_or_else(|| std::io::Error::other("this user's SID cannot be read"))?;
    let mut next = instance(&path, true).map_err(|e| {
        std::io::Error::new(
            e.kind(),
            format!(
                "{}: {e} (is another certagent of yours running?)",
                path.display()
            ),
        )
    })?;
    let (stop, mut stopped) = oneshot::channel();
    let slots = Arc::new(Semaphore::new(CONCURRENT));
    let name = path.clone();
    let task = tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = &mut stopped => return,
                c = next.connect() => if c.is_err() {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                },
            }
            let pipe = next;
            next = match instance(&name, false) {
                Ok(p) => p,
                Err(e) => {
                    log::warn!(
                        "the browser extension's channel stops: {}: {e}",
                        name.display()
                    );
                    return;
                }
            };
            if !own_client(&pipe, &me) {
                continue;
            }
            let Ok(permit) = slots.clone().try_acquire_owned() else {
                continue;
            };
            let agent = agent.clone();
            tokio::spawn(async move {
                let _permit = permit;
                let (read, write) = tokio::io::split(pipe);
                super::answer_one(&agent, read, write).await;
            });
        }
    });
    Ok(RunningChannel {
        path,
        stop: Some(stop),
        task,
    })
}

/// The host's side: one request line to the agent's pipe, its answer (the
/// agent ends the connection after it).
pub fn ask(path: &Path, request: &[u8]) -> Result<Vec<u8>, AskError> {
    let mut pipe = match std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
    {
        Ok(p) => p,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(AskError::NotRunning),
        Err(e) => return Err(AskError::Io(e)),
    };
    pipe.write_all(request)?;
    pipe.write_all(b"\n")?;
    pipe.flush()?;
    let mut answer = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        match pipe.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => {
                answer.extend_from_slice(chunk.get(..n).unwrap_or_default());
                if answer.len() > MAX_REPLY {
                    return Err(AskError::TooLarge);
                }
                // One line is the whole answer.
                if answer.ends_with(b"\n") {
                    break;
                }
            }
            // The agent closed its end: the answer is complete.
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => break,
            Err(e) => return Err(AskError::Io(e)),
        }
    }
    Ok(answer)
}
