//! The background evaluation: a thread that evaluates the rules every interval until stopped.

use std::sync::mpsc::{channel, RecvTimeoutError, Sender};
use std::thread::JoinHandle;
use std::time::Duration;

use super::AlertEngine;

/// Evaluates an [`AlertEngine`]'s rules every interval on a thread of its own, from
/// [`AlertEngine::spawn`]. Stops when dropped (or at [`stop`](Self::stop)).
#[derive(Debug)]
#[must_use = "dropping the task stops the evaluation"]
pub struct AlertTask {
    stop: Option<Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl AlertTask {
    pub(super) fn spawn(engine: AlertEngine, every: Duration) -> std::io::Result<Self> {
        // A zero interval would spin: evaluating ten times a second is plenty.
        let every = every.max(Duration::from_millis(100));
        let (stop, stopped) = channel::<()>();
        let thread = std::thread::Builder::new()
            .name("tenant-otel-alerts".into())
            .spawn(move || loop {
                match stopped.recv_timeout(every) {
                    Err(RecvTimeoutError::Timeout) => {
                        engine.evaluate();
                    }
                    Ok(()) | Err(RecvTimeoutError::Disconnected) => return,
                }
            })?;
        Ok(AlertTask {
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    /// Stops the evaluation and waits for the thread to end.
    pub fn stop(mut self) {
        self.shut();
    }

    fn shut(&mut self) {
        drop(self.stop.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for AlertTask {
    fn drop(&mut self) {
        self.shut();
    }
}
