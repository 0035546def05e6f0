//! The agent's health report: real figures where the OS gives them (the machine's uptime, the
//! free space where the journal lives), simulated ones where it cannot (a countertop terminal
//! on mains power, charging at 100%; the printer's paper as the simulator's printer has it).

use crate::config::TerminalConfig;
use protocol::health::{Battery, Health, Network, NetworkKind, PaperState};
use std::path::Path;
use std::time::Instant;

/// The report as of now. `started` is when the agent started, the uptime where the OS does
/// not say its own.
pub fn measure(config: &TerminalConfig, started: Instant) -> Health {
    Health {
        agent_version: crate::AGENT_VERSION.to_string(),
        software_version: Some(format!("eftcloud-terminal {}", crate::AGENT_VERSION)),
        firmware_version: None,
        // Simulated: no battery the OS would tell us about on a development machine.
        battery: Some(Battery {
            level_percent: 100,
            charging: true,
        }),
        network: Some(Network {
            kind: NetworkKind::Other,
            signal_percent: None,
        }),
        printer_paper: Some(if config.printer_columns.is_some() {
            PaperState::Ok
        } else {
            PaperState::NoPrinter
        }),
        storage_free_bytes: free_bytes(&config.journal_path),
        uptime_secs: Some(system_uptime().unwrap_or_else(|| started.elapsed().as_secs())),
    }
}

/// Free bytes on the file system of the journal (its directory, which exists once the journal
/// does), as unprivileged writers see them.
fn free_bytes(journal: &Path) -> Option<u64> {
    let dir = match journal.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let st = rustix::fs::statvfs(dir).ok()?;
    st.f_bavail.checked_mul(st.f_frsize)
}

/// The machine's uptime in whole seconds, where the OS publishes it (`/proc/uptime`).
fn system_uptime() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/uptime").ok()?;
    let secs: f64 = text.split_whitespace().next()?.parse().ok()?;
    // Finite and non-negative as the kernel writes it; the cast saturates otherwise.
    Some(secs as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use protocol::DeviceId;

    #[test]
    fn a_report_has_real_uptime_and_storage_and_passes_the_clouds_check() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let mut config = TerminalConfig::new(
            "http://127.0.0.1:1"
                .parse()
                .unwrap_or_else(|e| panic!("{e}")),
            DeviceId::parse("d").unwrap_or_else(|e| panic!("{e}")),
            "s",
            dir.path().join("j.journal"),
        );
        let h = measure(&config, Instant::now());
        assert_eq!(h.check(), Ok(()));
        assert!(h.storage_free_bytes.is_some_and(|b| b > 0), "{h:?}");
        assert!(h.uptime_secs.is_some());
        if Path::new("/proc/uptime").exists() {
            assert!(h.uptime_secs.unwrap_or(0) > 0, "the machine's own uptime");
        }
        assert_eq!(h.printer_paper, Some(PaperState::Ok));
        assert!(!h.low_battery());
        config.printer_columns = None;
        assert_eq!(
            measure(&config, Instant::now()).printer_paper,
            Some(PaperState::NoPrinter)
        );
    }
}
