//! certagent's own dialog on Windows: a small top-most window of the
//! agent's (no pinentry to install), for consent ("Allow" / "Deny"), the
//! PIN and the one-time password (a password field), and messages.
//!
//! Made with plain Win32 controls (a static text, an edit box with
//! `ES_PASSWORD`, two buttons) on the calling thread, which runs the
//! window's message loop until the user answers, closes it, or
//! [`TIMEOUT`] passes; `IsDialogMessageW` gives it a dialog's keys (Tab,
//! Enter for the default button, Esc for Cancel). The texts come from
//! `i18n` in the Windows display language, cleaned of control and
//! bidirectional characters by the callers ([`super::clean`]). A typed
//! secret is copied once, into zeroizing memory, and the edit box is
//! emptied before the window goes.

use std::cell::{Cell, RefCell};
use std::ptr::{null, null_mut};
use std::time::Duration;

use cryptoki::types::AuthPin;
use secrecy::SecretString;
use windows_sys::Win32::Foundation::{HWND, LPARAM, LRESULT, RECT, WPARAM};
use windows_sys::Win32::Graphics::Gdi::{
    COLOR_BTNFACE, CreateFontIndirectW, DT_CALCRECT, DT_NOPREFIX, DT_WORDBREAK, DeleteObject,
    DrawTextW, GetDC, HBRUSH, HFONT, ReleaseDC, SelectObject,
};
use windows_sys::Win32::System::LibraryLoader::GetModuleHandleW;
use windows_sys::Win32::System::SystemServices::SS_NOPREFIX;
use windows_sys::Win32::UI::Controls::EM_SETLIMITTEXT;
use windows_sys::Win32::UI::Input::KeyboardAndMouse::SetFocus;
use windows_sys::Win32::UI::WindowsAndMessaging::{
    AdjustWindowRectEx, BS_DEFPUSHBUTTON, BS_PUSHBUTTON, CreateWindowExW, DC_HASDEFID, DM_GETDEFID,
    DefWindowProcW, DestroyWindow, DispatchMessageW, ES_AUTOHSCROLL, ES_PASSWORD, GetDlgItem,
    GetMessageW, GetSystemMetrics, GetWindowTextLengthW, GetWindowTextW, HMENU, IDC_ARROW,
    IDCANCEL, IDOK, IsDialogMessageW, KillTimer, LoadCursorW, MSG, NONCLIENTMETRICSW,
    PostQuitMessage, RegisterClassExW, SM_CXSCREEN, SM_CYSCREEN, SPI_GETNONCLIENTMETRICS, SW_SHOW,
    SendMessageW, SetForegroundWindow, SetTimer, SetWindowTextW, ShowWindow, SystemParametersInfoW,
    TranslateMessage, WM_CLOSE, WM_COMMAND, WM_DESTROY, WM_SETFONT, WM_TIMER, WNDCLASSEXW,
    WS_BORDER, WS_CAPTION, WS_CHILD, WS_EX_CLIENTEDGE, WS_EX_DLGMODALFRAME, WS_EX_TOPMOST,
    WS_POPUP, WS_SYSMENU, WS_TABSTOP, WS_VISIBLE,
};
use zeroize::Zeroizing;

use super::{Prompt, PromptError, admin_pin_text, otp_text, pin_text};
use crate::i18n::tr;
use crate::token::TokenInfo;

/// How long a dialog waits for the user (as pinentry's do).
pub const TIMEOUT: Duration = Duration::from_secs(120);
/// The window's title: what the tests (and the user) find it by.
pub const TITLE: &str = "certagent";
/// The longest secret the edit box takes.
const SECRET_MAX: usize = 256;
const CLASS: &str = "certagent-dialog";

/// The native Windows dialogs.
#[derive(Debug, Default, Clone, Copy)]
pub struct WindowsPrompt;

/// How a dialog ended.
enum Answer {
    Ok(Option<Zeroizing<String>>),
    Cancel,
    TimedOut,
}

/// What one dialog shows.
struct Spec<'a> {
    text: &'a str,
    /// A password field with this label.
    secret: Option<&'a str>,
    ok: String,
    /// No cancel button: a message.
    cancel: Option<String>,
}

fn wide(s: &str) -> Vec<u16> {
    s.encode_utf16().chain(std::iter::once(0)).collect()
}

/// Windows draws `\n` in a static control only as part of `\r\n`.
fn lines(s: &str) -> Vec<u16> {
    wide(&s.replace("\r\n", "\n").replace('\n', "\r\n"))
}

thread_local! {
    /// The answer of this thread's open dialog (one at a time per thread;
    /// the agent's dialogs take one turn for the whole agent).
    static ANSWER: Cell<Option<i32>> = const { Cell::new(None) };
    /// What was typed, read as OK was pressed.
    static SECRET: RefCell<Option<Zeroizing<String>>> = const { RefCell::new(None) };
}

const TIMED_OUT: i32 = -1;
const TIMER: usize = 1;
const EDIT_ID: i32 = 102;

unsafe extern "system" fn window_proc(hwnd: HWND, msg: u32, w: WPARAM, l: LPARAM) -> LRESULT {
    let end = |answer: i32| {
        ANSWER.with(|a| {
            if a.get().is_none() {
                a.set(Some(answer));
            }
        });
        // SAFETY: our own window, on its thread.
        unsafe { DestroyWindow(hwnd) };
    };
    match msg {
        WM_COMMAND => {
            let id = (w & 0xffff) as i32;
            if id == IDOK {
                // SAFETY: our own window's child, on its thread.
                let edit = unsafe { GetDlgItem(hwnd, EDIT_ID) };
                if !edit.is_null() {
                    // SAFETY: a live edit control of this thread.
                    let typed = unsafe { read_secret(edit) };
                    SECRET.with(|s| *s.borrow_mut() = Some(typed));
                }
            }
            if id == IDOK || id == IDCANCEL {
                end(id);
                return 0;
            }
        }
        WM_CLOSE => {
            end(IDCANCEL);
            return 0;
        }
        WM_TIMER => {
            end(TIMED_OUT);
            return 0;
        }
        // Enter presses OK: what a dialog's default button does.
        DM_GETDEFID => return ((DC_HASDEFID << 16) | IDOK as u32) as LRESULT,
        WM_DESTROY => {
            // SAFETY: on the window's thread.
            unsafe {
                KillTimer(hwnd, TIMER);
                PostQuitMessage(0);
            }
            return 0;
        }
        _ => {}
    }
    // SAFETY: the default handling of a message we were given.
    unsafe { DefWindowProcW(hwnd, msg, w, l) }
}

/// The system's message font (Japanese glyphs included on a Japanese
/// Windows), or none (the system font).
fn message_font() -> HFONT {
    // SAFETY: `metrics` is a zeroed struct with its size set, as asked.
    unsafe {
        let mut metrics: NONCLIENTMETRICSW = std::mem::zeroed();
        metrics.cbSize = size_of::<NONCLIENTMETRICSW>() as u32;
        if SystemParametersInfoW(
            SPI_GETNONCLIENTMETRICS,
            metrics.cbSize,
            (&raw mut metrics).cast(),
            0,
        ) == 0
        {
            return null_mut();
        }
        CreateFontIndirectW(&metrics.lfMessageFont)
    }
}

/// The height `text` takes at `width` in `font`.
fn text_height(font: HFONT, text: &[u16], width: i32) -> i32 {
    // SAFETY: a screen DC, released; `text` is NUL-terminated.
    unsafe {
        let dc = GetDC(null_mut());
        let old = SelectObject(dc, font);
        let mut rect = RECT {
            left: 0,
            top: 0,
            right: width,
            bottom: 0,
        };
        DrawTextW(
            dc,
            text.as_ptr(),
            -1,
            &mut rect,
            DT_CALCRECT | DT_WORDBREAK | DT_NOPREFIX,
        );
        SelectObject(dc, old);
        ReleaseDC(null_mut(), dc);
        rect.bottom.clamp(16, 600)
    }
}

/// One child control.
struct Child<'a> {
    class: &'a str,
    text: &'a [u16],
    style: u32,
    ex_style: u32,
    rect: (i32, i32, i32, i32),
    id: i32,
}

/// Show one dialog and wait for its answer, on this thread.
fn ask(spec: &Spec) -> Result<Answer, PromptError> {
    let unavailable = |why: String| PromptError::Unavailable {
        what: "an answer",
        why,
        hint: "[agent] pinentry (Gpg4win's pinentry.exe)",
    };
    // SAFETY: plain Win32 calls on this thread; every pointer passed is
    // to a live, NUL-terminated buffer; the window is destroyed before
    // the function returns (or by the user, which ends the loop).
    unsafe {
        let instance = GetModuleHandleW(null());
        let class = wide(CLASS);
        let wc = WNDCLASSEXW {
            cbSize: size_of::<WNDCLASSEXW>() as u32,
            style: 0,
            lpfnWndProc: Some(window_proc),
            cbClsExtra: 0,
            cbWndExtra: 0,
            hInstance: instance,
            hIcon: null_mut(),
            hCursor: LoadCursorW(null_mut(), IDC_ARROW),
            hbrBackground: (COLOR_BTNFACE + 1) as usize as HBRUSH,
            lpszMenuName: null(),
            lpszClassName: class.as_ptr(),
            hIconSm: null_mut(),
        };
        // A second registration fails harmlessly (the class is there).
        RegisterClassExW(&wc);

        let font = message_font();
        let (margin, width, button_w, button_h, edit_h) = (14, 420, 96, 28, 26);
        let text = lines(spec.text);
        let text_h = text_height(font, &text, width);
        let mut y = margin;
        let mut children = vec![Child {
            class: "STATIC",
            text: &text,
            style: SS_NOPREFIX,
            ex_style: 0,
            rect: (margin, y, width, text_h),
            id: 100,
        }];
        y += text_h + 10;
        let label;
        if let Some(prompt) = spec.secret {
            label = wide(prompt);
            let label_w = 90;
            children.push(Child {
                class: "STATIC",
                text: &label,
                style: SS_NOPREFIX,
                ex_style: 0,
                rect: (margin, y + 5, label_w, edit_h),
                id: 101,
            });
            children.push(Child {
                class: "EDIT",
                text: &[0],
                style: (ES_PASSWORD | ES_AUTOHSCROLL) as u32 | WS_TABSTOP | WS_BORDER,
                ex_style: WS_EX_CLIENTEDGE,
                rect: (margin + label_w, y, width - label_w, edit_h),
                id: EDIT_ID,
            });
            y += edit_h + 12;
        }
        let ok = wide(&spec.ok);
        let cancel = spec.cancel.as_deref().map(wide);
        let mut x = margin + width - button_w;
        if let Some(cancel) = &cancel {
            children.push(Child {
                class: "BUTTON",
                text: cancel,
                style: BS_PUSHBUTTON as u32 | WS_TABSTOP,
                ex_style: 0,
                rect: (x, y, button_w, button_h),
                id: IDCANCEL,
            });
            x -= button_w + 8;
        }
        children.push(Child {
            class: "BUTTON",
            text: &ok,
            style: BS_DEFPUSHBUTTON as u32 | WS_TABSTOP,
            ex_style: 0,
            rect: (x, y, button_w, button_h),
            id: IDOK,
        });
        y += button_h + margin;

        let style = WS_POPUP | WS_CAPTION | WS_SYSMENU;
        let ex_style = WS_EX_TOPMOST | WS_EX_DLGMODALFRAME;
        let mut frame = RECT {
            left: 0,
            top: 0,
            right: width + 2 * margin,
            bottom: y,
        };
        AdjustWindowRectEx(&mut frame, style, 0, ex_style);
        let (w, h) = (frame.right - frame.left, frame.bottom - frame.top);
        let (sw, sh) = (GetSystemMetrics(SM_CXSCREEN), GetSystemMetrics(SM_CYSCREEN));
        let title = wide(TITLE);
        ANSWER.with(|a| a.set(None));
        SECRET.with(|s| s.take());
        let hwnd = CreateWindowExW(
            ex_style,
            class.as_ptr(),
            title.as_ptr(),
            style,
            ((sw - w) / 2).max(0),
            ((sh - h) / 3).max(0),
            w,
            h,
            null_mut(),
            null_mut(),
            instance,
            null(),
        );
        if hwnd.is_null() {
            if !font.is_null() {
                DeleteObject(font);
            }
            return Err(unavailable(format!(
                "the dialog window could not be made ({})",
                std::io::Error::last_os_error()
            )));
        }
        let mut edit: HWND = null_mut();
        let mut default_button: HWND = null_mut();
        for c in &children {
            let class = wide(c.class);
            let (cx, cy, cw, ch) = c.rect;
            let child = CreateWindowExW(
                c.ex_style,
                class.as_ptr(),
                c.text.as_ptr(),
                WS_CHILD | WS_VISIBLE | c.style,
                cx,
                cy,
                cw,
                ch,
                hwnd,
                c.id as isize as HMENU,
                instance,
                null(),
            );
            if !font.is_null() {
                SendMessageW(child, WM_SETFONT, font as WPARAM, 1);
            }
            if c.id == EDIT_ID {
                edit = child;
                SendMessageW(child, EM_SETLIMITTEXT, SECRET_MAX, 0);
            }
            if c.id == IDOK {
                default_button = child;
            }
        }
        SetTimer(hwnd, TIMER, TIMEOUT.as_millis() as u32, None);
        ShowWindow(hwnd, SW_SHOW);
        SetForegroundWindow(hwnd);
        SetFocus(if edit.is_null() { default_button } else { edit });

        let mut msg: MSG = std::mem::zeroed();
        while GetMessageW(&mut msg, null_mut(), 0, 0) > 0 {
            if IsDialogMessageW(hwnd, &msg) == 0 {
                TranslateMessage(&msg);
                DispatchMessageW(&msg);
            }
        }
        if !font.is_null() {
            DeleteObject(font);
        }
        match ANSWER.with(|a| a.take()) {
            Some(IDOK) => Ok(Answer::Ok(SECRET.with(|s| s.take()))),
            Some(TIMED_OUT) => Ok(Answer::TimedOut),
            _ => Ok(Answer::Cancel),
        }
    }
}

/// The edit box's text, copied once into zeroizing memory; the box is
/// emptied.
///
/// # Safety
///
/// `edit` is a live edit control of this thread.
unsafe fn read_secret(edit: HWND) -> Zeroizing<String> {
    // SAFETY: the buffer is as long as the count passed.
    unsafe {
        let len = GetWindowTextLengthW(edit).clamp(0, SECRET_MAX as i32) as usize;
        let mut buf = Zeroizing::new(vec![0u16; len + 1]);
        let got = GetWindowTextW(edit, buf.as_mut_ptr(), (len + 1) as i32).max(0) as usize;
        let text = Zeroizing::new(String::from_utf16_lossy(buf.get(..got).unwrap_or(&[])));
        // The control's own copy: written over in place with as many
        // characters, then emptied.
        let mut filler = vec![u16::from(b'x'); got];
        filler.push(0);
        SetWindowTextW(edit, filler.as_ptr());
        SetWindowTextW(edit, [0u16].as_ptr());
        text
    }
}

impl WindowsPrompt {
    fn secret(
        &self,
        what: &'static str,
        description: &str,
        prompt: &str,
    ) -> Result<SecretString, PromptError> {
        let spec = Spec {
            text: &super::clean(description),
            secret: Some(prompt),
            ok: tr("dialog-ok", &[]),
            cancel: Some(tr("dialog-cancel", &[])),
        };
        match ask(&spec).map_err(|e| relabel(e, what))? {
            Answer::Ok(Some(s)) if !s.is_empty() => Ok(SecretString::from(s.as_str())),
            _ => Err(PromptError::Cancelled),
        }
    }
}

fn relabel(e: PromptError, what: &'static str) -> PromptError {
    match e {
        PromptError::Unavailable { why, hint, .. } => PromptError::Unavailable { what, why, hint },
        other => other,
    }
}

impl Prompt for WindowsPrompt {
    fn pin(&self, token: &TokenInfo, purpose: &str) -> Result<AuthPin, PromptError> {
        let t = pin_text(token, purpose);
        self.secret(t.what, &t.description, &t.prompt)
    }

    fn admin_pin(&self, token: &TokenInfo, purpose: &str) -> Result<AuthPin, PromptError> {
        let t = admin_pin_text(token, purpose);
        self.secret(t.what, &t.description, &t.prompt)
    }

    fn confirm(&self, question: &str) -> Result<bool, PromptError> {
        let spec = Spec {
            text: &super::clean(question),
            secret: None,
            ok: tr("dialog-allow", &[]),
            cancel: Some(tr("dialog-deny", &[])),
        };
        match ask(&spec).map_err(|e| relabel(e, "a confirmation"))? {
            Answer::Ok(_) => Ok(true),
            Answer::Cancel => Ok(false),
            Answer::TimedOut => Err(PromptError::Cancelled),
        }
    }

    fn show(&self, text: &str) -> Result<(), PromptError> {
        let spec = Spec {
            text: &super::clean(text),
            secret: None,
            ok: tr("dialog-ok", &[]),
            cancel: None,
        };
        ask(&spec).map_err(|e| relabel(e, "a message"))?;
        Ok(())
    }

    fn otp(&self, user: &str) -> Result<SecretString, PromptError> {
        let t = otp_text(user);
        self.secret(t.what, &t.description, &t.prompt)
    }
}
