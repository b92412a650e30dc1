//! libjpeg-turbo's decompressor, loaded at run time (`libjpeg.so.62`, Debian's `libjpeg62-turbo`,
//! which most Linux machines carry), so the crate builds and runs without it.
//!
//! Why it is worth an FFI: on 500×375 photos it decodes in 1.29 ms of CPU per image against
//! zune-jpeg's 1.75 ms (the `image` crate's decoder; 2.1 ms through `image`'s API) and
//! jpeg-decoder's 2.0 ms, and its `jpeg_crop_scanline` / `jpeg_skip_scanlines` decode only the
//! window a crop needs (0.88 ms for a central 60 % × 60 % window), which no pure-Rust decoder
//! offers. Measured one core, back to back, CPU time (BENCHMARKS.md, input pipeline).
//!
//! The structs below are the libjpeg 6.2 ABI of libjpeg-turbo on LP64 targets, declared only as
//! far as the fields we touch, then padded to the full size. Their sizes and offsets were taken
//! from the C headers (`sizeof`, `offsetof`) and are checked at compile time; libjpeg itself
//! checks the struct size we pass to `jpeg_CreateDecompress` and fails (through our error
//! handler, so the caller falls back to zune-jpeg) on a mismatch. Fatal libjpeg errors call
//! `error_exit`, which must not return: ours unwinds (`extern "C-unwind"`, `resume_unwind` so no
//! panic hook prints) through libjpeg's frames, which carry unwind tables, back to the
//! `catch_unwind` in [`LibJpeg::decode`], and the decompressor is destroyed there.

use crate::decode::{Rgb8, Window};
use libloading::Library;
use std::ffi::{c_char, c_int, c_long, c_uint, c_ulong, c_void};
use std::mem::{offset_of, size_of};
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::sync::OnceLock;

/// The library file to load, unless `CONVRNN_LIBJPEG` names another (it must have the 6.2 ABI).
const LIBRARY: &str = "libjpeg.so.62";
/// The environment variable naming the libjpeg library file to load instead of `libjpeg.so.62`.
pub const LIBRARY_ENV: &str = "CONVRNN_LIBJPEG";
const JPEG_LIB_VERSION: c_int = 62;
const JCS_RGB: c_int = 2;
const JDCT_ISLOW: c_int = 0;
const JMSG_LENGTH_MAX: usize = 200;

type Common = Decompress;

#[repr(C)]
struct ErrorMgr {
    error_exit: Option<unsafe extern "C-unwind" fn(*mut Common)>,
    emit_message: Option<unsafe extern "C-unwind" fn(*mut Common, c_int)>,
    output_message: Option<unsafe extern "C-unwind" fn(*mut Common)>,
    format_message: Option<unsafe extern "C-unwind" fn(*mut Common, *mut c_char)>,
    reset_error_mgr: Option<unsafe extern "C-unwind" fn(*mut Common)>,
    msg_code: c_int,
    msg_parm: [c_int; 20],
    trace_level: c_int,
    num_warnings: c_long,
    jpeg_message_table: *const *const c_char,
    last_jpeg_message: c_int,
    addon_message_table: *const *const c_char,
    first_addon_message: c_int,
    last_addon_message: c_int,
}

#[repr(C)]
struct Decompress {
    err: *mut ErrorMgr,
    mem: *mut c_void,
    progress: *mut c_void,
    client_data: *mut c_void,
    is_decompressor: c_int,
    global_state: c_int,
    src: *mut c_void,
    image_width: c_uint,
    image_height: c_uint,
    num_components: c_int,
    jpeg_color_space: c_int,
    out_color_space: c_int,
    scale_num: c_uint,
    scale_denom: c_uint,
    output_gamma: f64,
    buffered_image: c_int,
    raw_data_out: c_int,
    dct_method: c_int,
    do_fancy_upsampling: c_int,
    do_block_smoothing: c_int,
    quantize_colors: c_int,
    dither_mode: c_int,
    two_pass_quantize: c_int,
    desired_number_of_colors: c_int,
    enable_1pass_quant: c_int,
    enable_external_quant: c_int,
    enable_2pass_quant: c_int,
    output_width: c_uint,
    output_height: c_uint,
    out_color_components: c_int,
    output_components: c_int,
    rec_outbuf_height: c_int,
    actual_number_of_colors: c_int,
    colormap: *mut c_void,
    output_scanline: c_uint,
    _rest: [u8; 632 - 172],
}

// The C headers' sizeof/offsetof on x86_64 (libjpeg62-turbo-dev 2.1.5).
const _: () = {
    assert!(size_of::<ErrorMgr>() == 168);
    assert!(offset_of!(ErrorMgr, msg_code) == 40);
    assert!(offset_of!(ErrorMgr, num_warnings) == 128);
    assert!(size_of::<Decompress>() == 632);
    assert!(offset_of!(Decompress, src) == 40);
    assert!(offset_of!(Decompress, out_color_space) == 64);
    assert!(offset_of!(Decompress, output_gamma) == 80);
    assert!(offset_of!(Decompress, dct_method) == 96);
    assert!(offset_of!(Decompress, output_width) == 136);
    assert!(offset_of!(Decompress, output_components) == 148);
    assert!(offset_of!(Decompress, output_scanline) == 168);
};

type Cinfo = *mut Decompress;

struct Api {
    std_error: unsafe extern "C-unwind" fn(*mut ErrorMgr) -> *mut ErrorMgr,
    create: unsafe extern "C-unwind" fn(Cinfo, c_int, usize),
    destroy: unsafe extern "C-unwind" fn(Cinfo),
    abort: unsafe extern "C-unwind" fn(Cinfo),
    mem_src: unsafe extern "C-unwind" fn(Cinfo, *const u8, c_ulong),
    read_header: unsafe extern "C-unwind" fn(Cinfo, c_int) -> c_int,
    start: unsafe extern "C-unwind" fn(Cinfo) -> c_int,
    crop_scanline: unsafe extern "C-unwind" fn(Cinfo, *mut c_uint, *mut c_uint),
    skip_scanlines: unsafe extern "C-unwind" fn(Cinfo, c_uint) -> c_uint,
    read_scanlines: unsafe extern "C-unwind" fn(Cinfo, *mut *mut u8, c_uint) -> c_uint,
}

/// A loaded libjpeg-turbo.
pub struct LibJpeg {
    api: Api,
    path: String,
    _lib: Library,
}

impl std::fmt::Debug for LibJpeg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "LibJpeg({})", self.path)
    }
}

static LIBJPEG: OnceLock<Result<LibJpeg, String>> = OnceLock::new();

/// The process-wide libjpeg-turbo, loaded on first use, or why it could not be.
pub fn get() -> Result<&'static LibJpeg, &'static str> {
    LIBJPEG
        .get_or_init(|| load(&std::env::var(LIBRARY_ENV).unwrap_or_else(|_| LIBRARY.to_string())))
        .as_ref()
        .map_err(|e| e.as_str())
}

fn load(path: &str) -> Result<LibJpeg, String> {
    // SAFETY: loading a shared library runs its initialisers; libjpeg has none of note.
    let lib = unsafe { Library::new(path) }.map_err(|e| {
        format!("could not load {path} ({e}); `apt-get install libjpeg62-turbo` provides it")
    })?;
    macro_rules! sym {
        ($name:literal) => {
            // SAFETY: declared with the libjpeg 6.2 signatures; `jpeg_crop_scanline` exists only
            // in libjpeg-turbo, so a plain IJG libjpeg is refused here.
            *unsafe { lib.get($name) }.map_err(|e| {
                format!(
                    "{path} lacks {} ({e}); libjpeg-turbo ≥ 1.5 with the 6.2 ABI is required",
                    String::from_utf8_lossy(&$name[..$name.len() - 1])
                )
            })?
        };
    }
    let api = Api {
        std_error: sym!(b"jpeg_std_error\0"),
        create: sym!(b"jpeg_CreateDecompress\0"),
        destroy: sym!(b"jpeg_destroy_decompress\0"),
        abort: sym!(b"jpeg_abort_decompress\0"),
        mem_src: sym!(b"jpeg_mem_src\0"),
        read_header: sym!(b"jpeg_read_header\0"),
        start: sym!(b"jpeg_start_decompress\0"),
        crop_scanline: sym!(b"jpeg_crop_scanline\0"),
        skip_scanlines: sym!(b"jpeg_skip_scanlines\0"),
        read_scanlines: sym!(b"jpeg_read_scanlines\0"),
    };
    Ok(LibJpeg {
        api,
        path: path.to_string(),
        _lib: lib,
    })
}

/// What our callbacks record while one image decodes (reached through `client_data`).
#[derive(Default)]
struct Messages {
    /// A warning that means pixels are missing (a truncated file), formatted.
    truncated: Option<String>,
}

/// Carried by the unwind out of `error_exit`.
struct Fatal(String);

/// Why libjpeg-turbo did not return an image.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Failure {
    /// The file is cut short: pixels are missing (another decoder will not do better).
    Truncated(String),
    /// libjpeg gave up: corrupt data, or something it does not convert (CMYK to RGB).
    Fatal(String),
}

fn format(cinfo: *mut Common) -> String {
    let mut buf = [0 as c_char; JMSG_LENGTH_MAX];
    // SAFETY: `cinfo` is live (libjpeg is calling us with it) and `format_message` writes at most
    // JMSG_LENGTH_MAX bytes, NUL-terminated.
    unsafe {
        if let Some(f) = (*(*cinfo).err).format_message {
            f(cinfo, buf.as_mut_ptr());
        }
        std::ffi::CStr::from_ptr(buf.as_ptr())
            .to_string_lossy()
            .into_owned()
    }
}

unsafe extern "C-unwind" fn error_exit(cinfo: *mut Common) {
    resume_unwind(Box::new(Fatal(format(cinfo))))
}

unsafe extern "C-unwind" fn emit_message(cinfo: *mut Common, level: c_int) {
    if level >= 0 {
        return; // trace messages
    }
    // SAFETY: libjpeg passes the live decompressor whose `client_data` we set to a `Messages`
    // that outlives the decode.
    unsafe {
        (*(*cinfo).err).num_warnings += 1;
        let text = format(cinfo);
        // libjpeg fills what a truncated file lacks with grey and only warns; PIL and
        // torchvision refuse such files, and so do we. Other warnings (stray bytes before a
        // marker, common in ImageNet) leave the pixels intact.
        if text.contains("Premature end") || text.contains("premature end") {
            let m = &mut *((*cinfo).client_data as *mut Messages);
            m.truncated.get_or_insert(text);
        }
    }
}

unsafe extern "C-unwind" fn output_message(_cinfo: *mut Common) {}

impl LibJpeg {
    /// The library file that was loaded.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// Decodes `bytes` to RGB. `window` is called with the image's width and height and returns
    /// the part that is needed; the result holds at least that part (libjpeg widens it to whole
    /// blocks) and says where it starts.
    pub fn decode(
        &self,
        bytes: &[u8],
        window: &mut dyn FnMut(usize, usize) -> Window,
    ) -> Result<(Rgb8, Window), Failure> {
        let mut err = std::mem::MaybeUninit::<ErrorMgr>::zeroed();
        let mut messages = Messages::default();
        let mut cinfo = std::mem::MaybeUninit::<Decompress>::zeroed();
        let cinfo = cinfo.as_mut_ptr();
        let api = &self.api;
        // SAFETY: `err` is written by jpeg_std_error before use; the callbacks we install match
        // libjpeg's signatures; `cinfo` is zeroed (as libjpeg's own examples leave it before
        // jpeg_create_decompress) and only used between create and destroy below.
        let created = unsafe {
            let e = (api.std_error)(err.as_mut_ptr());
            (*e).error_exit = Some(error_exit);
            (*e).emit_message = Some(emit_message);
            (*e).output_message = Some(output_message);
            (*cinfo).err = e;
            catch_unwind(AssertUnwindSafe(|| {
                (api.create)(cinfo, JPEG_LIB_VERSION, size_of::<Decompress>())
            }))
        };
        if let Err(payload) = created {
            return Err(Failure::Fatal(fatal_message(payload)));
        }
        // SAFETY: see above; the decompressor is destroyed whatever happened inside.
        let result = unsafe {
            (*cinfo).client_data = (&mut messages as *mut Messages).cast();
            let r = catch_unwind(AssertUnwindSafe(|| {
                self.decode_created(cinfo, bytes, window)
            }));
            (api.destroy)(cinfo);
            r
        };
        match result {
            Ok(Ok(_)) if messages.truncated.is_some() => Err(Failure::Truncated(
                messages.truncated.take().unwrap_or_default(),
            )),
            Ok(r) => r.map_err(Failure::Fatal),
            Err(payload) => Err(Failure::Fatal(fatal_message(payload))),
        }
    }

    /// # Safety
    /// `cinfo` must be a created, not yet destroyed decompressor whose error handler unwinds.
    unsafe fn decode_created(
        &self,
        cinfo: Cinfo,
        bytes: &[u8],
        window: &mut dyn FnMut(usize, usize) -> Window,
    ) -> Result<(Rgb8, Window), String> {
        let api = &self.api;
        // SAFETY: the caller's contract; `bytes` outlives the decompressor's use of it, which
        // ends before this function returns (abort below).
        unsafe {
            (api.mem_src)(cinfo, bytes.as_ptr(), bytes.len() as c_ulong);
            (api.read_header)(cinfo, 1);
            (*cinfo).out_color_space = JCS_RGB;
            (*cinfo).dct_method = JDCT_ISLOW;
            (api.start)(cinfo);
            let (w, h) = (
                (*cinfo).output_width as usize,
                (*cinfo).output_height as usize,
            );
            if (*cinfo).output_components != 3 || w == 0 || h == 0 {
                (api.abort)(cinfo);
                return Err(format!(
                    "unexpected decoder output: {w}×{h} with {} components",
                    (*cinfo).output_components
                ));
            }
            let want = window(w, h).clamped(w, h);
            let (mut x0, mut cw) = (want.x as c_uint, want.w as c_uint);
            if want.x > 0 || want.w < w {
                (api.crop_scanline)(cinfo, &mut x0, &mut cw);
            }
            let (x0, cw) = (x0 as usize, cw as usize);
            if want.y > 0 {
                (api.skip_scanlines)(cinfo, want.y as c_uint);
            }
            let rows = want.h;
            let mut data = vec![0u8; cw * 3 * rows];
            let mut done = 0;
            while done < rows {
                let mut row = data[done * cw * 3..].as_mut_ptr();
                let got = (api.read_scanlines)(cinfo, &mut row, 1) as usize;
                if got == 0 {
                    break;
                }
                done += got;
            }
            // The rows below the window are never decoded: aborting skips them.
            (api.abort)(cinfo);
            if done < rows {
                return Err(format!("the decoder stopped after {done} of {rows} rows"));
            }
            let got = Window {
                x: x0,
                y: want.y,
                w: cw,
                h: rows,
            };
            Ok((Rgb8::new(cw, rows, data).map_err(|e| e.to_string())?, got))
        }
    }
}

fn fatal_message(payload: Box<dyn std::any::Any + Send>) -> String {
    match payload.downcast::<Fatal>() {
        Ok(f) => f.0,
        // Not ours (a bug): let it continue as the panic it is.
        Err(other) => resume_unwind(other),
    }
}
