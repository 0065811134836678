//! The freedesktop.org desktop (Linux, the BSDs): a tray icon
//! (StatusNotifierItem over D-Bus, no GTK), desktop notifications
//! (org.freedesktop.Notifications), pages opened with `xdg-open`, and the
//! state icons by name where the icon theme has them.
//!
//! tray-icon's menu objects are not `Send`, so the tray lives on a thread
//! of its own and is driven through a channel; menu clicks come back as
//! [`Action`]s on the channel the agent gave.

use std::sync::mpsc::{self, Receiver, Sender};

use tray_icon::menu::{Menu, MenuEvent, MenuItem, PredefinedMenuItem};
use tray_icon::{Icon, NativeIcon, TrayIconBuilder};

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

enum Command {
    Show(View),
    Menu(String),
    Stop,
}

/// Handle to the tray thread.
struct Tray {
    commands: Sender<Command>,
    thread: Option<std::thread::JoinHandle<()>>,
}

const MENU_RENEW: &str = "renew";
const MENU_SHOW: &str = "show";
const MENU_OPEN: &str = "open";
const MENU_QUIT: &str = "quit";

impl Tray {
    /// Register the tray icon on the session bus.
    fn start(first: View, actions: Sender<Action>) -> Result<Tray, TrayError> {
        if std::env::var_os("DBUS_SESSION_BUS_ADDRESS").is_none()
            && std::env::var_os("XDG_RUNTIME_DIR")
                .is_none_or(|d| !std::path::Path::new(&d).join("bus").exists())
        {
            return Err(TrayError("no D-Bus session bus".into()));
        }
        let (commands, rx) = mpsc::channel();
        let (ready_tx, ready_rx) = mpsc::channel();
        let menu_commands = commands.clone();
        MenuEvent::set_event_handler(Some(move |e: MenuEvent| {
            let _ = menu_commands.send(Command::Menu(e.id().0.clone()));
        }));
        let thread = std::thread::Builder::new()
            .name("tray".into())
            .spawn(move || tray_thread(first, rx, actions, ready_tx))
            .map_err(|e| TrayError(e.to_string()))?;
        match ready_rx.recv() {
            Ok(Ok(())) => Ok(Tray {
                commands,
                thread: Some(thread),
            }),
            Ok(Err(e)) => Err(TrayError(e)),
            Err(_) => Err(TrayError("the tray thread ended".into())),
        }
    }

    fn show(&self, view: View) {
        let _ = self.commands.send(Command::Show(view));
    }
}

impl Drop for Tray {
    fn drop(&mut self) {
        let _ = self.commands.send(Command::Stop);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn tray_thread(
    first: View,
    rx: Receiver<Command>,
    actions: Sender<Action>,
    ready: Sender<Result<(), String>>,
) {
    let cert_item = MenuItem::with_id("certificate", &first.certificate_line, false, None);
    use crate::i18n::tr;
    let renew = MenuItem::with_id(MENU_RENEW, tr("tray-renew", &[]), first.can_renew, None);
    let show = MenuItem::with_id(MENU_SHOW, tr("tray-show", &[]), true, None);
    let open = MenuItem::with_id(MENU_OPEN, tr("tray-open", &[]), true, None);
    let quit = MenuItem::with_id(MENU_QUIT, tr("tray-quit", &[]), true, None);
    let menu = Menu::new();
    // Named icons where the theme has them (the package installs them): the
    // panel then takes the size it draws. Else one 64-pixel pixmap, which
    // panels scale down rather than up.
    let themed = themed();
    let built = menu
        .append_items(&[
            &cert_item,
            &PredefinedMenuItem::separator(),
            &renew,
            &show,
            &open,
            &PredefinedMenuItem::separator(),
            &quit,
        ])
        .map_err(|e| e.to_string())
        .and_then(|()| {
            let builder = TrayIconBuilder::new()
                .with_id("certagent")
                .with_title("certagent")
                .with_tooltip(&first.tooltip)
                .with_menu(Box::new(menu));
            if themed {
                builder.with_native_icon(named(first.badge))
            } else {
                builder.with_icon(icon(first.badge))
            }
            .build()
            .map_err(|e| e.to_string())
        });
    let tray = match built {
        Ok(t) => {
            let _ = ready.send(Ok(()));
            t
        }
        Err(e) => {
            let _ = ready.send(Err(e));
            return;
        }
    };
    let mut current = first;
    while let Ok(cmd) = rx.recv() {
        match cmd {
            Command::Show(view) if view != current => {
                cert_item.set_text(&view.certificate_line);
                renew.set_enabled(view.can_renew);
                let _ = tray.set_tooltip(Some(&view.tooltip));
                if view.badge != current.badge {
                    let _ = if themed {
                        tray.set_native_icon(Some(named(view.badge)))
                    } else {
                        tray.set_icon(Some(icon(view.badge)))
                    };
                }
                current = view;
            }
            Command::Show(_) => {}
            Command::Menu(id) => {
                let action = match id.as_str() {
                    MENU_RENEW => Action::Renew,
                    MENU_SHOW => Action::ShowCertificate,
                    MENU_OPEN => Action::OpenBankSite,
                    MENU_QUIT => Action::Quit,
                    _ => continue,
                };
                let _ = actions.send(action);
            }
            Command::Stop => break,
        }
    }
}

/// The state's icon as a pixmap (see [`icons`] for the shapes).
fn icon(badge: Badge) -> Icon {
    const N: u32 = 64;
    // The buffer is N*N*4 bytes by construction.
    Icon::from_rgba(icons::render(badge, N), N, N)
        .unwrap_or_else(|e| unreachable!("icon buffer: {e}"))
}

/// The state's icon by its theme name.
fn named(badge: Badge) -> NativeIcon {
    NativeIcon::from_name(icons::theme_name(badge))
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
