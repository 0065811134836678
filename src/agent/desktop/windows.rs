//! The Windows desktop: the tray icon by the clock (tray-icon's Windows
//! backend: a notification-area icon with the same glyphs and menu as on
//! Linux), notices as the notification area shows them (a balloon, which
//! Windows 10 and 11 show as a toast), and pages opened with the user's
//! browser (`ShellExecuteW`).
//!
//! A notification-area icon belongs to a window, and a window to the
//! thread that made it: the tray lives on a thread of its own running a
//! Win32 message loop. The agent's commands reach it through a channel,
//! and a thread message (`WM_APP`) wakes the loop to read them; menu
//! clicks, dispatched by that loop, go straight back as [`Action`]s.

use std::sync::mpsc::{self, Receiver, Sender};

use tray_icon::menu::{ContextMenu, Menu, MenuEvent, MenuItem, PredefinedMenuItem};
use tray_icon::{Icon, TrayIcon, TrayIconBuilder};
use windows_sys::Win32::Foundation::{HWND, LPARAM, LRESULT, POINT, WPARAM};
use windows_sys::Win32::System::Threading::GetCurrentThreadId;
use windows_sys::Win32::UI::Shell::{
    DefSubclassProc, NIF_INFO, NIIF_INFO, NIIF_WARNING, NIM_MODIFY, NIN_BALLOONUSERCLICK,
    NOTIFYICONDATAW, RemoveWindowSubclass, SetWindowSubclass, Shell_NotifyIconW, ShellExecuteW,
};
use windows_sys::Win32::UI::WindowsAndMessaging::{
    DispatchMessageW, GetCursorPos, GetMessageW, GetSystemMetrics, HMENU, MSG, PM_NOREMOVE,
    PeekMessageW, PostMessageW, PostThreadMessageW, SM_CXSMICON, SW_SHOWNORMAL,
    SetForegroundWindow, TPM_BOTTOMALIGN, TPM_RIGHTBUTTON, TrackPopupMenu, TranslateMessage,
    WM_APP, WM_LBUTTONUP, WM_NULL, WM_RBUTTONUP,
};

use super::{Action, Desktop, TrayError, View, notice_text};
use crate::agent::icons::{self, Badge};

/// The thread message that says "commands are waiting".
const WAKE: u32 = WM_APP + 1;

/// The desktop of a Windows session.
pub struct WindowsDesktop {
    actions: Sender<Action>,
    tray: Option<Tray>,
}

impl WindowsDesktop {
    pub fn new(actions: Sender<Action>) -> WindowsDesktop {
        WindowsDesktop {
            actions,
            tray: None,
        }
    }
}

impl Desktop for WindowsDesktop {
    fn start_tray(&mut self, first: View) -> Result<(), TrayError> {
        self.tray = Some(Tray::start(first, self.actions.clone())?);
        Ok(())
    }

    fn show(&self, view: View) {
        if let Some(t) = &self.tray {
            t.send(Command::Show(view));
        }
    }

    /// A balloon from the tray icon. Windows has no notice without an icon
    /// in the notification area: with `--no-tray` this says so. A click on
    /// the balloon opens nothing; "Renew certificate…" is in the menu.
    fn notify(&self, summary: &str, body: &str, renew: bool) -> Result<(), String> {
        let Some(t) = &self.tray else {
            return Err(
                "on Windows a notice comes from the tray icon, and there is none (yet)".into(),
            );
        };
        let (summary, body) = notice_text(summary, body);
        let (done, answer) = mpsc::channel();
        t.send(Command::Notice {
            summary,
            body,
            warning: renew,
            done,
        });
        answer
            .recv_timeout(std::time::Duration::from_secs(10))
            .map_err(|_| "the tray did not answer".to_string())?
    }

    fn open_page(&self, url: &str) -> Result<(), String> {
        if !(url.starts_with("https://") || url.starts_with("http://")) {
            return Err(format!("not a web address: {url}"));
        }
        let (verb, file) = (wide("open"), wide(url));
        // SAFETY: NUL-terminated strings that outlive the call.
        let code = unsafe {
            ShellExecuteW(
                std::ptr::null_mut(),
                verb.as_ptr(),
                file.as_ptr(),
                std::ptr::null(),
                std::ptr::null(),
                SW_SHOWNORMAL,
            )
        } as isize;
        // ShellExecute's "instance" is an error code up to 32.
        if code > 32 {
            Ok(())
        } else {
            Err(format!("Windows could not open {url} (error {code})"))
        }
    }
}

fn wide(s: &str) -> Vec<u16> {
    s.encode_utf16().chain(std::iter::once(0)).collect()
}

/// `s` into a fixed UTF-16 field, cut to fit and NUL-terminated.
fn fill(field: &mut [u16], s: &str) {
    let room = field.len().saturating_sub(1);
    let mut units: Vec<u16> = s.encode_utf16().take(room).collect();
    // Never leave half a surrogate pair at the cut.
    if units.last().is_some_and(|u| (0xd800..0xdc00).contains(u)) {
        units.pop();
    }
    for (slot, u) in field
        .iter_mut()
        .zip(units.iter().chain(std::iter::repeat(&0)))
    {
        *slot = *u;
    }
}

enum Command {
    Show(View),
    Notice {
        summary: String,
        body: String,
        warning: bool,
        done: Sender<Result<(), String>>,
    },
    Stop,
}

/// Handle to the tray thread.
struct Tray {
    commands: Sender<Command>,
    thread_id: u32,
    thread: Option<std::thread::JoinHandle<()>>,
}

const MENU_RENEW: &str = "renew";
const MENU_SHOW: &str = "show";
const MENU_OPEN: &str = "open";
const MENU_QUIT: &str = "quit";

impl Tray {
    fn start(first: View, actions: Sender<Action>) -> Result<Tray, TrayError> {
        let (commands, rx) = mpsc::channel();
        let (ready_tx, ready_rx) = mpsc::channel();
        let menu_actions = actions.clone();
        MenuEvent::set_event_handler(Some(move |e: MenuEvent| {
            let action = match e.id().0.as_str() {
                MENU_RENEW => Action::Renew,
                MENU_SHOW => Action::ShowCertificate,
                MENU_OPEN => Action::OpenBankSite,
                MENU_QUIT => Action::Quit,
                _ => return,
            };
            let _ = menu_actions.send(action);
        }));
        let thread = std::thread::Builder::new()
            .name("tray".into())
            .spawn(move || tray_thread(first, rx, actions, ready_tx))
            .map_err(|e| TrayError(e.to_string()))?;
        match ready_rx.recv() {
            Ok(Ok(thread_id)) => Ok(Tray {
                commands,
                thread_id,
                thread: Some(thread),
            }),
            Ok(Err(e)) => Err(TrayError(e)),
            Err(_) => Err(TrayError("the tray thread ended".into())),
        }
    }

    fn send(&self, command: Command) {
        if self.commands.send(command).is_ok() {
            // SAFETY: a thread message to the tray thread's queue.
            unsafe { PostThreadMessageW(self.thread_id, WAKE, 0, 0) };
        }
    }
}

impl Drop for Tray {
    fn drop(&mut self) {
        self.send(Command::Stop);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The state's icon at the size of the notification area (16 pixels at
/// 100 %, 24 at 150 %, 32 at 200 %), drawn at that size, not scaled.
fn icon(badge: Badge) -> Icon {
    // SAFETY: a plain query.
    let size = unsafe { GetSystemMetrics(SM_CXSMICON) }.clamp(16, 64) as u32;
    // The buffer is size*size*4 bytes by construction.
    Icon::from_rgba(icons::render(badge, size), size, size)
        .unwrap_or_else(|e| unreachable!("icon buffer: {e}"))
}

/// tray-icon's callback message for its icons (its source's
/// `WM_USER_TRAYICON`; the crate is pinned in Cargo.lock).
const TRAY_CALLBACK: u32 = 6002;
const CLICKS_ID: usize = 0x6365_7274; // "cert"

/// What the icon's clicks need.
struct Clicks {
    menu: HMENU,
    actions: Sender<Action>,
    /// The last balloon offered to renew: a click on it renews.
    renew_offered: std::cell::Cell<bool>,
}

/// The icon's mouse messages, before tray-icon's own handling. tray-icon
/// opens the menu only where `Shell_NotifyIconGetRect` answers, which
/// Wine's notification area does not: the menu is opened here, at the
/// pointer, on every system alike. A click on a balloon that offered to
/// renew starts the renewal, as "Renew now" does on Linux.
unsafe extern "system" fn icon_messages(
    hwnd: HWND,
    msg: u32,
    w: WPARAM,
    l: LPARAM,
    _id: usize,
    data: usize,
) -> LRESULT {
    if msg == TRAY_CALLBACK && data != 0 {
        // SAFETY: `data` is the `Clicks` the tray thread keeps alive while
        // the subclass is in place.
        let clicks = unsafe { &*(data as *const Clicks) };
        match (l & 0xffff) as u32 {
            WM_RBUTTONUP | WM_LBUTTONUP => {
                let mut at = POINT { x: 0, y: 0 };
                // SAFETY: the tray's own window and menu, on their thread;
                // WM_NULL afterwards, as the shell's documentation asks.
                unsafe {
                    GetCursorPos(&mut at);
                    SetForegroundWindow(hwnd);
                    TrackPopupMenu(
                        clicks.menu,
                        TPM_BOTTOMALIGN | TPM_RIGHTBUTTON,
                        at.x,
                        at.y,
                        0,
                        hwnd,
                        std::ptr::null(),
                    );
                    PostMessageW(hwnd, WM_NULL, 0, 0);
                }
                return 0;
            }
            NIN_BALLOONUSERCLICK => {
                if clicks.renew_offered.get() {
                    let _ = clicks.actions.send(Action::Renew);
                }
                return 0;
            }
            _ => {}
        }
    }
    // SAFETY: the next handler of the chain.
    unsafe { DefSubclassProc(hwnd, msg, w, l) }
}

fn tray_thread(
    first: View,
    rx: Receiver<Command>,
    actions: Sender<Action>,
    ready: Sender<Result<u32, String>>,
) {
    // A thread has a message queue once it asks for a message: made now,
    // so that no wake-up posted before the loop starts is lost.
    // SAFETY: `msg` is written by the call.
    let thread_id = unsafe {
        let mut msg: MSG = std::mem::zeroed();
        PeekMessageW(&mut msg, std::ptr::null_mut(), 0, 0, PM_NOREMOVE);
        GetCurrentThreadId()
    };
    use crate::i18n::tr;
    let cert_item = MenuItem::with_id("certificate", &first.certificate_line, false, None);
    let renew = MenuItem::with_id(MENU_RENEW, tr("tray-renew", &[]), first.can_renew, None);
    let show = MenuItem::with_id(MENU_SHOW, tr("tray-show", &[]), true, None);
    let open = MenuItem::with_id(MENU_OPEN, tr("tray-open", &[]), true, None);
    let quit = MenuItem::with_id(MENU_QUIT, tr("tray-quit", &[]), true, None);
    let menu = Menu::new();
    let hmenu = menu.hpopupmenu() as HMENU;
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
            TrayIconBuilder::new()
                .with_id("certagent")
                .with_tooltip(&first.tooltip)
                .with_menu(Box::new(menu))
                .with_icon(icon(first.badge))
                .build()
                .map_err(|e| e.to_string())
        });
    let tray = match built {
        Ok(t) => {
            let _ = ready.send(Ok(thread_id));
            t
        }
        Err(e) => {
            let _ = ready.send(Err(e));
            return;
        }
    };
    // Clicks and balloon clicks are taken before tray-icon sees them (see
    // `icon_messages`); the data lives until the subclass is removed below.
    let clicks = Box::new(Clicks {
        menu: hmenu,
        actions,
        renew_offered: std::cell::Cell::new(false),
    });
    let hwnd = tray.window_handle();
    // SAFETY: the tray's window, on its thread; `clicks` outlives the
    // subclass (removed before it is dropped).
    unsafe {
        SetWindowSubclass(
            hwnd,
            Some(icon_messages),
            CLICKS_ID,
            &raw const *clicks as usize,
        )
    };
    run_loop(&tray, &cert_item, &renew, first, &rx, &clicks);
    // SAFETY: as above.
    unsafe { RemoveWindowSubclass(hwnd, Some(icon_messages), CLICKS_ID) };
    drop(clicks);
}

/// The tray thread's message loop, until [`Command::Stop`].
fn run_loop(
    tray: &TrayIcon,
    cert_item: &MenuItem,
    renew: &MenuItem,
    first: View,
    rx: &Receiver<Command>,
    clicks: &Clicks,
) {
    let mut current = first;
    // SAFETY: the loop of this thread's own windows (the tray's, its menu).
    unsafe {
        let mut msg: MSG = std::mem::zeroed();
        while GetMessageW(&mut msg, std::ptr::null_mut(), 0, 0) > 0 {
            if msg.hwnd.is_null() && msg.message == WAKE {
                while let Ok(cmd) = rx.try_recv() {
                    match cmd {
                        Command::Show(view) => {
                            if view != current {
                                cert_item.set_text(&view.certificate_line);
                                renew.set_enabled(view.can_renew);
                                let _ = tray.set_tooltip(Some(&view.tooltip));
                                if view.badge != current.badge {
                                    let _ = tray.set_icon(Some(icon(view.badge)));
                                }
                                current = view;
                            }
                        }
                        Command::Notice {
                            summary,
                            body,
                            warning,
                            done,
                        } => {
                            clicks.renew_offered.set(warning);
                            let _ = done.send(balloon(tray, &summary, &body, warning));
                        }
                        Command::Stop => return,
                    }
                }
                continue;
            }
            TranslateMessage(&msg);
            DispatchMessageW(&msg);
        }
    }
}

/// A balloon from the tray's icon.
fn balloon(tray: &TrayIcon, summary: &str, body: &str, warning: bool) -> Result<(), String> {
    let mut data = NOTIFYICONDATAW {
        cbSize: size_of::<NOTIFYICONDATAW>() as u32,
        hWnd: tray.window_handle(),
        uFlags: NIF_INFO,
        dwInfoFlags: if warning { NIIF_WARNING } else { NIIF_INFO },
        ..Default::default()
    };
    fill(&mut data.szInfoTitle, summary);
    fill(&mut data.szInfo, body);
    // An icon is named by its window and a number. tray-icon makes a
    // window for each icon but keeps the number to itself (it counts up
    // from 1 per process, with other uses between); the window is the
    // icon's alone, so the one number it takes is the icon's. (Not a
    // GUID: Windows ties an icon's GUID to the executable's path, which
    // an update may change.)
    for id in 1..=64 {
        data.uID = id;
        // SAFETY: `data` is a complete NOTIFYICONDATAW with its size set.
        if unsafe { Shell_NotifyIconW(NIM_MODIFY, &data) } != 0 {
            return Ok(());
        }
    }
    Err(format!(
        "the notification area refused the notice ({})",
        std::io::Error::last_os_error()
    ))
}
