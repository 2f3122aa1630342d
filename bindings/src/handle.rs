//! What every handle type shares: handing a box to C and taking it back, reading the immutable
//! lists, and the call machinery of the stateful handles (`berth_ingest`,
//! `berth_snapshot_tree`, `berth_task_table`).
//!
//! The exported `_new`/`_open`, `_free`, `_len`, `_get` and `_last_error` functions are one call
//! of these helpers each; their `# Safety` sections restate the exported function's contract.

use std::borrow::Cow;
use std::ffi::c_char;

use crate::arg::{write_out, write_str};
use crate::panic::ffi_panic_boundary;
use crate::result::berth_result;

/// Boxes `value` and hands it to C through the out-pointer `out`: on success `*out` owns the box
/// (C gives it back to the type's `_free`, which is [`free_box`]). A NULL `out` gives
/// `BERTH_ERR_NULL` and drops `value`.
///
/// # Safety
///
/// `out` is NULL or valid and aligned for a pointer write (it may point to uninitialised memory).
pub(crate) unsafe fn box_out<T>(out: *mut *mut T, value: T) -> berth_result {
    let raw = Box::into_raw(Box::new(value));
    // SAFETY: the caller promises `out` is NULL or valid for a pointer write.
    if let Err(e) = unsafe { write_out(out, raw) } {
        // SAFETY: `raw` came from `Box::into_raw` just above and was never handed out.
        drop(unsafe { Box::from_raw(raw) });
        return e;
    }
    berth_result::BERTH_OK
}

/// The body of every `_free` function: drops the box behind `p`, inside the panic boundary.
/// NULL is a no-op.
///
/// # Safety
///
/// `p` is NULL or was handed out by [`box_out`] as a `*mut T` and not freed yet. It must not be
/// used after.
pub(crate) unsafe fn free_box<T>(p: *mut T) {
    ffi_panic_boundary(|| {
        if !p.is_null() {
            // SAFETY: the caller promises `p` came from `Box::into_raw` in `box_out` and is
            // freed once.
            drop(unsafe { Box::from_raw(p) });
        }
    })
}

/// An immutable list handed to C (`berth_snapshot_actions`, `berth_mounts`,
/// `berth_task_recovery`): its items are flat structs whose pointers borrow from the list.
pub(crate) trait List {
    /// One item, copied out by [`list_get`].
    type Item: Copy;
    /// The items, in order.
    fn items(&self) -> &[Self::Item];
}

/// The body of every list's `_len` function: how many items; 0 for NULL.
///
/// # Safety
///
/// `list` is NULL or a live list.
pub(crate) unsafe fn list_len<L: List>(list: *const L) -> usize {
    ffi_panic_boundary(|| {
        // SAFETY: the caller promises `list` is NULL or a live list.
        let list = try_some!(unsafe { list.as_ref() });
        list.items().len()
    })
}

/// The body of every list's `_get` function: copies item `index` into `*out`.
///
/// Errors: `BERTH_ERR_NULL` for a NULL list or `out`; `BERTH_ERR_INVALID` if `index` is not
/// below the length (and `out` is not NULL).
///
/// # Safety
///
/// `list` is NULL or a live list; `out` is NULL or valid for a write of an item.
pub(crate) unsafe fn list_get<L: List>(
    list: *const L,
    index: usize,
    out: *mut L::Item,
) -> berth_result {
    ffi_panic_boundary(|| {
        // SAFETY: the caller promises `list` is NULL or a live list.
        let list = try_some!(unsafe { list.as_ref() });
        let Some(item) = list.items().get(index) else {
            return if out.is_null() {
                berth_result::BERTH_ERR_NULL
            } else {
                berth_result::BERTH_ERR_INVALID
            };
        };
        // SAFETY: the caller promises `out` is NULL or valid for a write.
        try_ok!(unsafe { write_out(out, *item) });
        berth_result::BERTH_OK
    })
}

/// The call state a stateful handle embeds: whether a call panicked, the last failure, and the
/// storage behind the pointers the last call lent to C.
#[derive(Default)]
pub(crate) struct CallState<L> {
    /// Set while a call runs; still set afterwards only if the call panicked.
    poisoned: bool,
    last_error: Option<String>,
    /// The gRPC code of the last failure, where the handle reports one (0 if none).
    last_code: u32,
    /// Storage behind the pointers lent by the last call.
    pub(crate) lent: L,
    /// Makes the next call panic inside it.
    #[cfg(test)]
    pub(crate) panic_on_next_call: bool,
}

impl<L> CallState<L> {
    /// `Err(BERTH_ERR_PANIC)` if an earlier call panicked: what a function that takes the
    /// handle as a `const` pointer (and so does not run through `call`) checks first.
    pub(crate) fn usable(&self) -> Result<(), berth_result> {
        if self.poisoned {
            return Err(berth_result::BERTH_ERR_PANIC);
        }
        Ok(())
    }

    /// Records the text of a failure and returns its code.
    pub(crate) fn fail(&mut self, code: berth_result, text: String) -> berth_result {
        self.last_error = Some(text);
        code
    }

    /// Records the text and gRPC code of a failure and returns its code.
    pub(crate) fn fail_grpc(
        &mut self,
        code: berth_result,
        grpc: u32,
        text: String,
    ) -> berth_result {
        self.last_code = grpc;
        self.fail(code, text)
    }

    /// The gRPC code of the last failure (0 if none).
    pub(crate) fn last_code(&self) -> u32 {
        self.last_code
    }

    /// The text `_last_error` reports: the last failure's (empty if none), or, once a call into
    /// the handle (called `name`) panicked, that it must be freed.
    fn last_error_text(&self, name: &str) -> Cow<'_, str> {
        match (&self.last_error, self.poisoned) {
            (_, true) => Cow::Owned(format!("a call into this {name} panicked; free it")),
            (Some(e), false) => Cow::Borrowed(e.as_str()),
            (None, false) => Cow::Borrowed(""),
        }
    }
}

/// A handle whose calls run through an embedded [`CallState`].
pub(crate) trait CallHandle: Sized {
    /// What the handle's calls lend to C; retired at the start of the next call.
    type Lent: Default;
    /// The handle's name in the text of `_last_error` after a panic (`"snapshot tree"`).
    const NAME: &'static str;
    /// The embedded call state.
    fn state(&self) -> &CallState<Self::Lent>;
    /// The embedded call state, to change.
    fn state_mut(&mut self) -> &mut CallState<Self::Lent>;

    /// Runs one call: refuses it if an earlier call panicked, retires the pointers lent by the
    /// last call, and leaves the handle poisoned if `f` panics.
    fn call(&mut self, f: impl FnOnce(&mut Self) -> berth_result) -> berth_result {
        let state = self.state_mut();
        if state.poisoned {
            return berth_result::BERTH_ERR_PANIC;
        }
        state.poisoned = true;
        // Retired, but dropped only after the call: arguments may still point into it (a name
        // lent by the last call passed back as an argument of this one).
        let _retired = std::mem::take(&mut state.lent);
        #[cfg(test)]
        if std::mem::take(&mut state.panic_on_next_call) {
            panic!("injected panic");
        }
        let r = f(self);
        self.state_mut().poisoned = false;
        r
    }
}

/// The body of every `_last_error` function: copies the text of the handle's last failure
/// into `buf` (see [`write_str`] for the buffer rules).
///
/// # Safety
///
/// `handle` is NULL or a live handle; `buf` is NULL or valid for writes of `len` bytes;
/// `written` is NULL or valid for one write.
pub(crate) unsafe fn last_error_out<H: CallHandle>(
    handle: *const H,
    buf: *mut c_char,
    len: usize,
    written: *mut usize,
) -> berth_result {
    ffi_panic_boundary(|| {
        // SAFETY: the caller promises `handle` is NULL or a live handle.
        let handle = try_some!(unsafe { handle.as_ref() });
        let text = handle.state().last_error_text(H::NAME);
        // SAFETY: the caller promises `buf`/`len` and `written` are valid or NULL.
        unsafe { write_str(&text, buf, len, written) }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ptr::{null, null_mut};

    struct Items(Vec<u32>);

    impl List for Items {
        type Item = u32;
        fn items(&self) -> &[u32] {
            &self.0
        }
    }

    #[test]
    fn box_out_hands_over_and_free_box_takes_back() {
        let mut out = std::ptr::dangling_mut::<Items>();
        // SAFETY: `out` is a valid local.
        let r = unsafe { box_out(&mut out, Items(vec![7, 8])) };
        assert_eq!(r, berth_result::BERTH_OK);
        // SAFETY: `out` is the live list just handed out.
        assert_eq!(unsafe { list_len(out) }, 2);
        let mut item = 0;
        // SAFETY: as above; `item` is a valid local.
        let r = unsafe { list_get(out, 1, &mut item) };
        assert_eq!((r, item), (berth_result::BERTH_OK, 8));
        // SAFETY: as above.
        let r = unsafe { list_get(out, 2, &mut item) };
        assert_eq!(r, berth_result::BERTH_ERR_INVALID);
        // SAFETY: as above; a NULL `out` is refused before any write.
        let r = unsafe { list_get(out, 2, null_mut()) };
        assert_eq!(r, berth_result::BERTH_ERR_NULL);
        // SAFETY: `out` came from `box_out` and is freed once; NULL is a no-op.
        unsafe {
            free_box(out);
            free_box(null_mut::<Items>());
        }
        // SAFETY: a NULL `out` is refused before any write; the value is dropped, not leaked.
        let r = unsafe { box_out(null_mut(), Items(vec![1])) };
        assert_eq!(r, berth_result::BERTH_ERR_NULL);
        // SAFETY: NULL lists are allowed.
        unsafe {
            assert_eq!(list_len::<Items>(null()), 0);
            assert_eq!(
                list_get::<Items>(null(), 0, &mut item),
                berth_result::BERTH_ERR_NULL
            );
        }
    }

    #[derive(Default)]
    struct Counter {
        state: CallState<Vec<u8>>,
        calls: u32,
    }

    impl CallHandle for Counter {
        type Lent = Vec<u8>;
        const NAME: &'static str = "counter";
        fn state(&self) -> &CallState<Vec<u8>> {
            &self.state
        }
        fn state_mut(&mut self) -> &mut CallState<Vec<u8>> {
            &mut self.state
        }
    }

    fn last_error(c: &Counter) -> String {
        let mut buf = [0 as c_char; 64];
        let mut n = 0;
        // SAFETY: `c` is live; `buf` is 64 writable bytes, `n` a valid local.
        let r = unsafe { last_error_out(c, buf.as_mut_ptr(), buf.len(), &mut n) };
        assert_eq!(r, berth_result::BERTH_OK);
        String::from_utf8(buf[..n].iter().map(|b| *b as u8).collect()).unwrap()
    }

    #[test]
    fn calls_retire_lent_storage_record_failures_and_poison_on_panic() {
        let mut c = Counter::default();
        assert_eq!(last_error(&c), "");
        c.state.lent = vec![1];
        let r = c.call(|c| {
            assert!(c.state.lent.is_empty(), "retired at the start of the call");
            c.calls += 1;
            c.state
                .fail_grpc(berth_result::BERTH_ERR_NOT_FOUND, 5, "gone".into())
        });
        assert_eq!(r, berth_result::BERTH_ERR_NOT_FOUND);
        assert_eq!(
            (last_error(&c), c.state.last_code(), c.calls),
            ("gone".into(), 5, 1)
        );
        assert_eq!(c.state.usable(), Ok(()));

        c.state.panic_on_next_call = true;
        let r = ffi_panic_boundary(|| c.call(|_| berth_result::BERTH_OK));
        assert_eq!(r, berth_result::BERTH_ERR_PANIC);
        assert_eq!(c.state.usable(), Err(berth_result::BERTH_ERR_PANIC));
        assert_eq!(
            c.call(|_| berth_result::BERTH_OK),
            berth_result::BERTH_ERR_PANIC
        );
        assert_eq!(last_error(&c), "a call into this counter panicked; free it");
        assert_eq!(c.calls, 1);
    }
}
