//! The freedesktop.org desktop (Linux, the BSDs): a tray icon
//! (StatusNotifierItem over D-Bus, no GTK), desktop notifications
//! (org.freedesktop.Notifications), pages opened with `xdg-open`, and the
//! state icons by name where the icon theme has them.
//!
//! The tray is a ksni StatusNotifierItem served on the agent's tokio
//! runtime (tray-icon's freedesktop backend runs ksni on async-io, whose
//! zbus connects through the `blocking` crate's pool: that pool's idle
//! thread wakes twice a second for as long as the process lives; on tokio
//! an idle agent with its tray sleeps). Menu clicks come back as
//! [`Action`]s on the channel the agent gave.

use std::sync::mpsc::Sender;
use std::time::Duration;

use ksni::TrayMethods;

use super::{Action, Desktop, TrayError, View, notice_text};
use crate::agent::icons::{self, Badge};

/// The desktop of a freedesktop.org session.
pub struct FreeDesktop {
    actions: Sender<Action>,
    tray: Option<Tray>,
}

impl FreeDesktop {
    pub fn new(actions: Sender<Action>) -> FreeDesktop {
        FreeDesktop {
            actions,
            tray: None,
        }
    }
}

impl Desktop for FreeDesktop {
    fn start_tray(&mut self, first: View) -> Result<(), TrayError> {
        self.tray = Some(Tray::start(first, self.actions.clone())?);
        Ok(())
    }

    fn show(&self, view: View) {
        if let Some(t) = &self.tray {
            t.show(view);
        }
    }

    fn notify(&self, summary: &str, body: &str, renew: bool) -> Result<(), String> {
        notify(summary, body, renew, self.actions.clone())
    }

    fn open_page(&self, url: &str) -> Result<(), String> {
        std::process::Command::new("xdg-open")
            .arg(url)
            .spawn()
            .map(drop)
            .map_err(|e| e.to_string())
    }
}

/// How long the agent waits for the session bus when the tray starts and
/// when it is taken down.
const BUS_WAIT: Duration = Duration::from_secs(10);

/// The item on the bus, served by tasks of the agent's runtime.
struct Tray {
    runtime: tokio::runtime::Handle,
    handle: ksni::Handle<Item>,
    /// The last view handed to the item.
    shown: std::sync::Mutex<View>,
    /// Views handed over so far.
    changes: std::sync::atomic::AtomicU64,
}

impl Tray {
    /// Register the tray icon on the session bus. Runs in the agent's
    /// runtime's context (the item's tasks are spawned there), outside
    /// any of its tasks.
    fn start(first: View, actions: Sender<Action>) -> Result<Tray, TrayError> {
        if std::env::var_os("DBUS_SESSION_BUS_ADDRESS").is_none()
            && std::env::var_os("XDG_RUNTIME_DIR")
                .is_none_or(|d| !std::path::Path::new(&d).join("bus").exists())
        {
            return Err(TrayError("no D-Bus session bus".into()));
        }
        let runtime = tokio::runtime::Handle::try_current()
            .map_err(|e| TrayError(format!("no runtime for the tray: {e}")))?;
        let item = Item {
            themed: themed(),
            view: first.clone(),
            change: 0,
            actions,
        };
        // No StatusNotifierWatcher yet (a panel that starts after the agent)
        // is not an error: the item registers once one appears. Waited for
        // here rather than with a runtime timer, which would wake the idle
        // runtime once more at its deadline.
        let (tx, rx) = std::sync::mpsc::channel();
        runtime.spawn(async move {
            let _ = tx.send(item.assume_sni_available(true).spawn().await);
        });
        match rx.recv_timeout(BUS_WAIT) {
            Ok(Ok(handle)) => Ok(Tray {
                runtime,
                handle,
                shown: std::sync::Mutex::new(first),
                changes: std::sync::atomic::AtomicU64::new(0),
            }),
            Ok(Err(e)) => Err(TrayError(e.to_string())),
            Err(_) => Err(TrayError("the session bus did not answer".into())),
        }
    }

    fn show(&self, view: View) {
        let mut shown = self.shown.lock().unwrap_or_else(|e| e.into_inner());
        if *shown == view {
            return;
        }
        *shown = view.clone();
        // Handed to the item's task and not waited for (no timer either: an
        // idle agent that shows an unchanged view does nothing at all).
        // Each change carries its number, so one overtaken by a later one
        // is not applied after it.
        let handle = self.handle.clone();
        let number = self
            .changes
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            + 1;
        self.runtime.spawn(async move {
            handle
                .update(move |item| {
                    if number > item.change {
                        item.change = number;
                        item.view = view;
                    }
                })
                .await;
        });
    }
}

impl Drop for Tray {
    fn drop(&mut self) {
        let shutdown = self.handle.shutdown();
        let (tx, rx) = std::sync::mpsc::channel();
        self.runtime.spawn(async move {
            shutdown.await;
            let _ = tx.send(());
        });
        let _ = rx.recv_timeout(BUS_WAIT);
    }
}

/// What the panel shows: the state's icon, the tooltip and the menu.
struct Item {
    /// Icons by theme name (the package installs them) rather than pixmaps.
    themed: bool,
    view: View,
    /// The number of the change that set `view`.
    change: u64,
    actions: Sender<Action>,
}

impl Item {
    fn entry(label: String, enabled: bool, action: Option<Action>) -> ksni::MenuItem<Item> {
        ksni::menu::StandardItem {
            label,
            enabled,
            activate: Box::new(move |item: &mut Item| {
                if let Some(a) = action {
                    let _ = item.actions.send(a);
                }
            }),
            ..Default::default()
        }
        .into()
    }
}

impl ksni::Tray for Item {
    fn id(&self) -> String {
        "certagent".into()
    }

    fn title(&self) -> String {
        "certagent".into()
    }

    fn category(&self) -> ksni::Category {
        ksni::Category::ApplicationStatus
    }

    // Named icons where the theme has them: the panel then takes the size
    // it draws. Else one 64-pixel pixmap, which panels scale down rather
    // than up.
    fn icon_name(&self) -> String {
        if self.themed {
            icons::theme_name(self.view.badge).into()
        } else {
            String::new()
        }
    }

    fn icon_pixmap(&self) -> Vec<ksni::Icon> {
        if self.themed {
            Vec::new()
        } else {
            vec![pixmap(self.view.badge)]
        }
    }

    fn tool_tip(&self) -> ksni::ToolTip {
        ksni::ToolTip {
            title: "certagent".into(),
            description: self.view.tooltip.clone(),
            icon_pixmap: self.icon_pixmap(),
            ..Default::default()
        }
    }

    fn menu(&self) -> Vec<ksni::MenuItem<Item>> {
        use crate::i18n::tr;
        vec![
            Item::entry(self.view.certificate_line.clone(), false, None),
            ksni::MenuItem::Separator,
            Item::entry(
                tr("tray-renew", &[]),
                self.view.can_renew,
                Some(Action::Renew),
            ),
            Item::entry(tr("tray-show", &[]), true, Some(Action::ShowCertificate)),
            Item::entry(tr("tray-open", &[]), true, Some(Action::OpenBankSite)),
            ksni::MenuItem::Separator,
            Item::entry(tr("tray-quit", &[]), true, Some(Action::Quit)),
        ]
    }
}

/// The state's icon as a 64-pixel pixmap (see [`icons`] for the shapes),
/// in the ARGB32 network byte order StatusNotifierItem wants.
fn pixmap(badge: Badge) -> ksni::Icon {
    const N: u32 = 64;
    let mut data = icons::render(badge, N);
    for pixel in data.chunks_exact_mut(4) {
        pixel.rotate_right(1);
    }
    ksni::Icon {
        width: N as i32,
        height: N as i32,
        data,
    }
}

/// Whether the installed icon theme has the state icons (the package
/// installs them under hicolor); then the tray names them and the panel
/// picks the size it needs.
fn themed() -> bool {
    let mut dirs: Vec<std::path::PathBuf> = Vec::new();
    if let Some(home) = std::env::var_os("XDG_DATA_HOME") {
        dirs.push(home.into());
    } else if let Some(home) = std::env::var_os("HOME") {
        dirs.push(std::path::Path::new(&home).join(".local/share"));
    }
    let system = std::env::var("XDG_DATA_DIRS")
        .ok()
        .filter(|d| !d.is_empty())
        .unwrap_or_else(|| "/usr/local/share:/usr/share".into());
    dirs.extend(system.split(':').map(std::path::PathBuf::from));
    let name = format!("{}.png", icons::theme_name(Badge::Valid));
    dirs.iter().any(|d| {
        icons::SIZES.iter().any(|s| {
            d.join(format!("icons/hicolor/{s}x{s}/status"))
                .join(&name)
                .is_file()
        })
    })
}

/// Show a desktop notification; with `renew`, it carries a "Renew now"
/// action that comes back as [`Action::Renew`]. Returns once the server has
/// it (waiting for the action happens on a thread of its own).
fn notify(summary: &str, body: &str, renew: bool, actions: Sender<Action>) -> Result<(), String> {
    let (summary, body) = notice_text(summary, body);
    let mut n = notify_rust::Notification::new();
    n.appname("certagent")
        .summary(&summary)
        .body(&body)
        .icon("certagent");
    if renew {
        n.action("renew", &crate::i18n::tr("notice-due-action", &[]));
    }
    let handle = n.show().map_err(|e| e.to_string())?;
    if renew {
        std::thread::spawn(move || {
            handle.wait_for_action(|a| {
                if a == "renew" {
                    let _ = actions.send(Action::Renew);
                }
            })
        });
    }
    Ok(())
}
