//! The channel on Unix: a stream socket in the private state directory
//! (0700), the socket itself 0600, and every connection's peer uid (from
//! the kernel, `SO_PEERCRED`) equal to the agent's, else closed unread.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::UnixListener;
use tokio::sync::{Semaphore, oneshot};

use super::{AskError, MAX_REPLY};
use crate::agent::shared::Agent;

/// Requests served at once (each may wait minutes for the user).
const CONCURRENT: usize = 16;

/// The channel, serving until shut down; its socket is removed then.
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
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Listen at `path` for this user's native hosts.
pub async fn serve(agent: Arc<Agent>, path: PathBuf) -> std::io::Result<RunningChannel> {
    if let Some(dir) = path.parent() {
        crate::config::ensure_state_dir(dir)?;
    }
    // A socket left by an agent that ended without removing it is taken
    // over; one that answers belongs to an agent that runs.
    if std::fs::symlink_metadata(&path).is_ok() {
        if std::os::unix::net::UnixStream::connect(&path).is_ok() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::AddrInUse,
                format!(
                    "{} answers: another certagent of yours is running",
                    path.display()
                ),
            ));
        }
        std::fs::remove_file(&path)?;
    }
    let listener = UnixListener::bind(&path)?;
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
    }
    let (stop, mut stopped) = oneshot::channel();
    let slots = Arc::new(Semaphore::new(CONCURRENT));
    let me = crate::platform::user_id();
    let task = tokio::spawn(async move {
        loop {
            let stream = tokio::select! {
                _ = &mut stopped => return,
                a = listener.accept() => match a {
                    Ok((s, _)) => s,
                    Err(_) => {
                        tokio::time::sleep(Duration::from_millis(10)).await;
                        continue;
                    }
                },
            };
            match stream.peer_cred() {
                Ok(c) if c.uid() == me => {}
                _ => continue,
            }
            let Ok(permit) = slots.clone().try_acquire_owned() else {
                continue;
            };
            let agent = agent.clone();
            tokio::spawn(async move {
                let _permit = permit;
                let (read, write) = stream.into_split();
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

/// The host's side: one request line to the agent at `path`, its answer.
pub fn ask(path: &Path, request: &[u8]) -> Result<Vec<u8>, AskError> {
    let mut s = match std::os::unix::net::UnixStream::connect(path) {
        Ok(s) => s,
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused
            ) =>
        {
            return Err(AskError::NotRunning);
        }
        Err(e) => return Err(AskError::Io(e)),
    };
    s.write_all(request)?;
    s.write_all(b"\n")?;
    s.shutdown(std::net::Shutdown::Write)?;
    let mut answer = Vec::new();
    s.take(MAX_REPLY as u64 + 1).read_to_end(&mut answer)?;
    if answer.len() > MAX_REPLY {
        return Err(AskError::TooLarge);
    }
    Ok(answer)
}
