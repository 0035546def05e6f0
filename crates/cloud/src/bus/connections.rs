//! The table of device connections this node holds: one entry per device id, newest wins.

use crate::bus::Undeliverable;
use protocol::device::{close, CloudMessage};
use protocol::{DeviceId, TerminalStatus};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use tokio::sync::mpsc;

/// Frames queued for one connection before it is considered stuck.
const OUTBOUND_BUFFER: usize = 64;

/// What a connection task is asked to do.
#[derive(Debug)]
pub enum Outbound {
    /// Send this frame. Boxed: tokio's channel allocates its first block of 32 slots when it
    /// is made, so an unboxed 256-byte frame cost every idle connection 8 KiB (boxed: 768 B),
    /// about a third of its memory (`bench load --idle-devices`).
    Message(Box<CloudMessage>),
    /// Close the socket with this code and reason, then end.
    Close { code: u16, reason: &'static str },
}

struct Handle {
    id: u64,
    tx: mpsc::Sender<Outbound>,
    /// The state the device last reported with a `status` frame.
    status: Option<TerminalStatus>,
}

/// Connections by device id. The lock is a plain mutex held only for map operations, never
/// across an `.await`.
#[derive(Default)]
pub struct Connections {
    by_device: Mutex<HashMap<DeviceId, Handle>>,
    next_id: AtomicU64,
}

impl Connections {
    /// Registers a new connection for `device`, closing any older one (the newer connection
    /// wins: the old one is usually a half-open socket the device already gave up on).
    pub fn attach(&self, device: &DeviceId) -> (u64, mpsc::Receiver<Outbound>) {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = mpsc::channel(OUTBOUND_BUFFER);
        let old = self.lock().insert(
            device.clone(),
            Handle {
                id,
                tx,
                status: None,
            },
        );
        if let Some(old) = old {
            // If the old task is stuck and its queue full, dropping its sender still ends it.
            let _ = old.tx.try_send(Outbound::Close {
                code: close::REPLACED,
                reason: "replaced by a newer connection for this device",
            });
        }
        (id, rx)
    }

    /// Removes the connection if it is still the current one for the device. Returns whether it was.
    pub fn detach(&self, device: &DeviceId, id: u64) -> bool {
        let mut map = self.lock();
        if map.get(device).is_some_and(|h| h.id == id) {
            map.remove(device);
            true
        } else {
            false
        }
    }

    /// Queues a frame for the device's connection.
    pub fn send(&self, device: &DeviceId, msg: CloudMessage) -> Result<(), Undeliverable> {
        let map = self.lock();
        let handle = map
            .get(device)
            .ok_or_else(|| Undeliverable(device.clone()))?;
        // try_send: a connection whose queue is full is not reading; waiting for it would let
        // one stuck device slow down everyone else's requests.
        handle
            .tx
            .try_send(Outbound::Message(Box::new(msg)))
            .map_err(|_| Undeliverable(device.clone()))
    }

    /// Asks the device's connection here, if any, to close.
    pub fn close(&self, device: &DeviceId, code: u16, reason: &'static str) {
        if let Some(h) = self.lock().get(device) {
            let _ = h.tx.try_send(Outbound::Close { code, reason });
        }
    }

    /// Records the state the device reported on its current connection.
    pub fn set_status(&self, device: &DeviceId, id: u64, status: TerminalStatus) {
        if let Some(h) = self.lock().get_mut(device).filter(|h| h.id == id) {
            h.status = Some(status);
        }
    }

    /// The state the device last reported, if it is connected here and reported one.
    pub fn status(&self, device: &DeviceId) -> Option<TerminalStatus> {
        self.lock().get(device).and_then(|h| h.status)
    }

    /// Whether the device has a connection here.
    pub fn is_connected(&self, device: &DeviceId) -> bool {
        self.lock().contains_key(device)
    }

    /// How many devices are connected.
    pub fn count(&self) -> usize {
        self.lock().len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<DeviceId, Handle>> {
        // A panic while holding this lock cannot leave the map half-updated (each operation is
        // a single map call), so a poisoned lock is safe to keep using.
        self.by_device.lock().unwrap_or_else(|p| p.into_inner())
    }
}
