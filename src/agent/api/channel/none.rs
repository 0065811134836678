//! No channel for the browser extension on this platform yet: the agent
//! says so when it starts, and the host answers the page that the agent
//! cannot be reached (the page falls back to the localhost API).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::AskError;
use crate::agent::shared::Agent;

pub struct RunningChannel(PathBuf);

impl RunningChannel {
    pub fn path(&self) -> &Path {
        &self.0
    }

    pub async fn shutdown(self) {}
}

const NONE: &str = "the browser extension's channel is not available on this platform yet";

pub async fn serve(_agent: Arc<Agent>, _path: PathBuf) -> std::io::Result<RunningChannel> {
    Err(std::io::Error::new(std::io::ErrorKind::Unsupported, NONE))
}

pub fn ask(_path: &Path, _request: &[u8]) -> Result<Vec<u8>, AskError> {
    Err(AskError::Io(std::io::Error::new(
        std::io::ErrorKind::Unsupported,
        NONE,
    )))
}
