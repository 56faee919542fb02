//! Just enough of GGUF (v2 and v3 read, v3 written) for the model-maker:
//! the header (metadata of every value type, nested arrays included, and the
//! tensor table) is read and written here; tensor data is never read, and
//! is written by the caller at the offsets [`Layout`] gives.
//!
//! Spec: <https://github.com/ggml-org/ggml/blob/master/docs/gguf.md>. All
//! numbers are little-endian; a string is a u64 byte count and the bytes;
//! dimensions are listed innermost first (`ne[0]` is a row's length).

use anyhow::{Context, Result, bail, ensure};
use std::fs::File;
use std::io::{BufReader, Read};
use std::path::Path;

/// "GGUF" read as a little-endian u32.
const MAGIC: u32 = 0x4655_4747;
/// The version this module writes.
const VERSION: u32 = 3;
/// The alignment of the tensor data when `general.alignment` is absent.
pub const DEFAULT_ALIGNMENT: u64 = 32;
/// ggml's limit on a tensor's dimensions.
const MAX_DIMS: u32 = 4;
/// Arrays of arrays deeper than this are refused rather than recursed into.
const MAX_NESTING: u32 = 16;

/// The type of a metadata value, with its code in the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ValueType {
    U8,
    I8,
    U16,
    I16,
    U32,
    I32,
    F32,
    Bool,
    String,
    Array,
    U64,
    I64,
    F64,
}

impl ValueType {
    fn from_code(code: u32) -> Result<Self> {
        Ok(match code {
            0 => Self::U8,
            1 => Self::I8,
            2 => Self::U16,
            3 => Self::I16,
            4 => Self::U32,
            5 => Self::I32,
            6 => Self::F32,
            7 => Self::Bool,
            8 => Self::String,
            9 => Self::Array,
            10 => Self::U64,
            11 => Self::I64,
            12 => Self::F64,
            _ => bail!("unknown metadata value type {code}"),
        })
    }

    fn code(self) -> u32 {
        match self {
            Self::U8 => 0,
            Self::I8 => 1,
            Self::U16 => 2,
            Self::I16 => 3,
            Self::U32 => 4,
            Self::I32 => 5,
            Self::F32 => 6,
            Self::Bool => 7,
            Self::String => 8,
            Self::Array => 9,
            Self::U64 => 10,
            Self::I64 => 11,
            Self::F64 => 12,
        }
    }
}

/// A metadata value. Strings are kept as the file's bytes and arrays keep
/// their element type (even when empty), so a value read and written again
/// is the same bytes.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    U8(u8),
    I8(i8),
    U16(u16),
    I16(i16),
    U32(u32),
    I32(i32),
    F32(f32),
    Bool(bool),
    String(Vec<u8>),
    Array(ValueType, Vec<Value>),
    U64(u64),
    I64(i64),
    F64(f64),
}

impl Value {
    pub fn string(s: &str) -> Self {
        Self::String(s.as_bytes().to_vec())
    }

    pub fn value_type(&self) -> ValueType {
        match self {
            Self::U8(_) => ValueType::U8,
            Self::I8(_) => ValueType::I8,
            Self::U16(_) => ValueType::U16,
            Self::I16(_) => ValueType::I16,
            Self::U32(_) => ValueType::U32,
            Self::I32(_) => ValueType::I32,
            Self::F32(_) => ValueType::F32,
            Self::Bool(_) => ValueType::Bool,
            Self::String(_) => ValueType::String,
            Self::Array(..) => ValueType::Array,
            Self::U64(_) => ValueType::U64,
            Self::I64(_) => ValueType::I64,
            Self::F64(_) => ValueType::F64,
        }
    }
}

/// The ggml tensor types the model-maker writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GgmlType {
    F32,
    F16,
    /// Blocks of 256 values in 144 bytes: f16 `d`, f16 `dmin`, 12 bytes of
    /// 6-bit scales and mins for the eight sub-blocks of 32, 128 bytes of
    /// 4-bit quants.
    Q4K,
}

impl GgmlType {
    pub fn code(self) -> u32 {
        match self {
            Self::F32 => 0,
            Self::F16 => 1,
            Self::Q4K => 12,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::F32 => "F32",
            Self::F16 => "F16",
            Self::Q4K => "Q4_K",
        }
    }

    /// Values per block.
    pub fn block_elems(self) -> u64 {
        match self {
            Self::F32 | Self::F16 => 1,
            Self::Q4K => 256,
        }
    }

    /// Bytes per block.
    pub fn block_bytes(self) -> u64 {
        match self {
            Self::F32 => 4,
            Self::F16 => 2,
            Self::Q4K => 144,
        }
    }
}

/// One entry of the tensor table. `offset` is from the start of the tensor
/// data, not of the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorInfo {
    pub name: String,
    /// Innermost first, as in the file.
    pub dims: Vec<u64>,
    /// The ggml type code (any, when read; see [`GgmlType::code`]).
    pub ggml_type: u32,
    pub offset: u64,
}

/// A file's header: everything but the tensor data.
#[derive(Debug)]
pub struct Header {
    pub version: u32,
    /// In file order.
    pub metadata: Vec<(String, Value)>,
    pub tensors: Vec<TensorInfo>,
    /// Where the tensor data starts in the file.
    pub data_offset: u64,
    pub file_len: u64,
}

impl Header {
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.metadata.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }
}

/// Reads a GGUF file's header; the tensor data is not read.
pub fn read_header(path: &Path) -> Result<Header> {
    let file = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let file_len = file.metadata().with_context(|| format!("cannot stat {}", path.display()))?.len();
    let mut r = Reader { inner: BufReader::with_capacity(1 << 20, file), pos: 0, len: file_len };
    parse_header(&mut r).with_context(|| format!("{} is not a valid GGUF file", path.display()))
}

fn parse_header<R: Read>(r: &mut Reader<R>) -> Result<Header> {
    ensure!(r.len >= 8, "it is {} bytes long, too short for a GGUF header", r.len);
    let magic = r.u32()?;
    ensure!(magic == MAGIC, "it does not start with the GGUF magic (found {:02x?})", magic.to_le_bytes());
    let version = r.u32()?;
    ensure!(version == 2 || version == 3, "GGUF version {version} is not supported (2 and 3 are)");
    let tensor_count = r.u64()?;
    let kv_count = r.u64()?;
    // Every key/value pair takes at least 13 bytes and every tensor entry
    // at least 24, so counts beyond that are corrupt, not just large.
    ensure!(kv_count <= r.remaining() / 13, "it claims {kv_count} metadata entries, more than the file could hold");
    ensure!(tensor_count <= r.remaining() / 24, "it claims {tensor_count} tensors, more than the file could hold");

    let mut metadata = Vec::with_capacity(usize::try_from(kv_count)?);
    for i in 0..kv_count {
        let key = r.utf8_string().with_context(|| format!("reading the key of metadata entry {i}"))?;
        let value_type = ValueType::from_code(r.u32()?).with_context(|| format!("reading metadata `{key}`"))?;
        let value = r.value(value_type, 0).with_context(|| format!("reading metadata `{key}`"))?;
        metadata.push((key, value));
    }

    let mut tensors = Vec::with_capacity(usize::try_from(tensor_count)?);
    for i in 0..tensor_count {
        let name = r.utf8_string().with_context(|| format!("reading the name of tensor {i}"))?;
        let n_dims = r.u32()?;
        ensure!(n_dims <= MAX_DIMS, "tensor `{name}` has {n_dims} dimensions (at most {MAX_DIMS})");
        let dims = (0..n_dims).map(|_| r.u64()).collect::<Result<Vec<_>>>()?;
        let ggml_type = r.u32()?;
        let offset = r.u64()?;
        tensors.push(TensorInfo { name, dims, ggml_type, offset });
    }

    let alignment = match metadata.iter().find(|(k, _)| k == "general.alignment").map(|(_, v)| v) {
        None => DEFAULT_ALIGNMENT,
        Some(Value::U32(a)) if *a > 0 => u64::from(*a),
        Some(other) => bail!("`general.alignment` is {other:?}, not a positive u32"),
    };
    let data_offset = r.pos.div_ceil(alignment) * alignment;
    Ok(Header { version, metadata, tensors, data_offset, file_len: r.len })
}

struct Reader<R> {
    inner: R,
    pos: u64,
    len: u64,
}

impl<R: Read> Reader<R> {
    fn remaining(&self) -> u64 {
        self.len.saturating_sub(self.pos)
    }

    fn bytes<const N: usize>(&mut self) -> Result<[u8; N]> {
        let mut b = [0; N];
        self.inner
            .read_exact(&mut b)
            .with_context(|| format!("the file ends inside its header (at byte {})", self.pos))?;
        self.pos += N as u64;
        Ok(b)
    }

    fn u32(&mut self) -> Result<u32> {
        Ok(u32::from_le_bytes(self.bytes()?))
    }

    fn u64(&mut self) -> Result<u64> {
        Ok(u64::from_le_bytes(self.bytes()?))
    }

    fn raw_string(&mut self) -> Result<Vec<u8>> {
        let len = self.u64()?;
        ensure!(
            len <= self.remaining(),
            "a string at byte {} claims {len} bytes, more than the {} left in the file",
            self.pos,
            self.remaining()
        );
        let mut v = vec![0; usize::try_from(len)?];
        self.inner
            .read_exact(&mut v)
            .with_context(|| format!("the file ends inside a string (at byte {})", self.pos))?;
        self.pos += len;
        Ok(v)
    }

    fn utf8_string(&mut self) -> Result<String> {
        let at = self.pos;
        String::from_utf8(self.raw_string()?).with_context(|| format!("the string at byte {at} is not UTF-8"))
    }

    fn value(&mut self, t: ValueType, depth: u32) -> Result<Value> {
        Ok(match t {
            ValueType::U8 => Value::U8(u8::from_le_bytes(self.bytes()?)),
            ValueType::I8 => Value::I8(i8::from_le_bytes(self.bytes()?)),
            ValueType::U16 => Value::U16(u16::from_le_bytes(self.bytes()?)),
            ValueType::I16 => Value::I16(i16::from_le_bytes(self.bytes()?)),
            ValueType::U32 => Value::U32(self.u32()?),
            ValueType::I32 => Value::I32(i32::from_le_bytes(self.bytes()?)),
            ValueType::F32 => Value::F32(f32::from_le_bytes(self.bytes()?)),
            ValueType::U64 => Value::U64(self.u64()?),
            ValueType::I64 => Value::I64(i64::from_le_bytes(self.bytes()?)),
            ValueType::F64 => Value::F64(f64::from_le_bytes(self.bytes()?)),
            ValueType::Bool => match self.bytes::<1>()? {
                [0] => Value::Bool(false),
                [1] => Value::Bool(true),
                [b] => bail!("a bool at byte {} is {b}, not 0 or 1", self.pos - 1),
            },
            ValueType::String => Value::String(self.raw_string()?),
            ValueType::Array => {
                ensure!(depth < MAX_NESTING, "arrays nested more than {MAX_NESTING} deep");
                let elem_type = ValueType::from_code(self.u32()?)?;
                let n = self.u64()?;
                // Each element takes at least one byte (an empty array of
                // arrays takes 12), which bounds what a corrupt count can
                // make us allocate.
                ensure!(
                    n <= self.remaining(),
                    "an array at byte {} claims {n} elements, more than the {} bytes left in the file",
                    self.pos,
                    self.remaining()
                );
                let mut items = Vec::with_capacity(usize::try_from(n)?);
                for i in 0..n {
                    items.push(self.value(elem_type, depth + 1).with_context(|| format!("reading array element {i}"))?);
                }
                Value::Array(elem_type, items)
            }
        })
    }
}

/// Where each tensor's data goes.
#[derive(Debug)]
pub struct Layout {
    /// The header (metadata and tensor table) padded to the alignment: it is
    /// the file's first bytes, and the tensor data starts at its length.
    pub header: Vec<u8>,
    /// The tensor table as written; offsets are from the data's start.
    pub tensors: Vec<TensorInfo>,
    /// The size of each tensor's data in bytes.
    pub sizes: Vec<u64>,
    /// The whole file's length (the last tensor is padded to the alignment).
    pub file_len: u64,
}

impl Layout {
    pub fn data_offset(&self) -> u64 {
        self.header.len() as u64
    }
}

/// A tensor to be written: its name, dims (innermost first) and type.
#[derive(Debug, Clone)]
pub struct TensorSpec {
    pub name: String,
    pub dims: Vec<u64>,
    pub ggml_type: GgmlType,
}

impl TensorSpec {
    pub fn elems(&self) -> u64 {
        self.dims.iter().product()
    }

    /// The data's size in bytes; refuses a row length that is not a whole
    /// number of blocks.
    pub fn bytes(&self) -> Result<u64> {
        let t = self.ggml_type;
        let row = self.dims.first().copied().unwrap_or(1);
        ensure!(
            row % t.block_elems() == 0,
            "tensor `{}` has rows of {row} values, not a multiple of the {} values of a {} block",
            self.name,
            t.block_elems(),
            t.name()
        );
        Ok(self.elems() / t.block_elems() * t.block_bytes())
    }
}

/// Lays out a GGUF v3 file: the header with `metadata` (written in the
/// order given) and the tensor table, and each tensor's data at an offset
/// aligned to [`DEFAULT_ALIGNMENT`]. The metadata must not set
/// `general.alignment` to anything else.
pub fn layout(metadata: &[(String, Value)], specs: &[TensorSpec]) -> Result<Layout> {
    let alignment = DEFAULT_ALIGNMENT;
    if let Some((_, v)) = metadata.iter().find(|(k, _)| k == "general.alignment") {
        ensure!(*v == Value::U32(alignment as u32), "`general.alignment` must be {alignment} here, not {v:?}");
    }
    let mut tensors = Vec::with_capacity(specs.len());
    let mut sizes = Vec::with_capacity(specs.len());
    let mut offset = 0u64;
    for spec in specs {
        ensure!(spec.dims.len() <= MAX_DIMS as usize, "tensor `{}` has more than {MAX_DIMS} dimensions", spec.name);
        let size = spec.bytes()?;
        tensors.push(TensorInfo {
            name: spec.name.clone(),
            dims: spec.dims.clone(),
            ggml_type: spec.ggml_type.code(),
            offset,
        });
        sizes.push(size);
        offset = (offset + size).div_ceil(alignment) * alignment;
    }

    let mut h = Vec::new();
    h.extend_from_slice(&MAGIC.to_le_bytes());
    h.extend_from_slice(&VERSION.to_le_bytes());
    h.extend_from_slice(&(tensors.len() as u64).to_le_bytes());
    h.extend_from_slice(&(metadata.len() as u64).to_le_bytes());
    for (key, value) in metadata {
        put_string(&mut h, key.as_bytes());
        h.extend_from_slice(&value.value_type().code().to_le_bytes());
        put_value(&mut h, value).with_context(|| format!("writing metadata `{key}`"))?;
    }
    for t in &tensors {
        put_string(&mut h, t.name.as_bytes());
        h.extend_from_slice(&(t.dims.len() as u32).to_le_bytes());
        for d in &t.dims {
            h.extend_from_slice(&d.to_le_bytes());
        }
        h.extend_from_slice(&t.ggml_type.to_le_bytes());
        h.extend_from_slice(&t.offset.to_le_bytes());
    }
    let padded = (h.len() as u64).div_ceil(alignment) * alignment;
    h.resize(usize::try_from(padded)?, 0);
    let file_len = padded + offset;
    Ok(Layout { header: h, tensors, sizes, file_len })
}

fn put_string(h: &mut Vec<u8>, s: &[u8]) {
    h.extend_from_slice(&(s.len() as u64).to_le_bytes());
    h.extend_from_slice(s);
}

fn put_value(h: &mut Vec<u8>, v: &Value) -> Result<()> {
    match v {
        Value::U8(x) => h.push(*x),
        Value::I8(x) => h.extend_from_slice(&x.to_le_bytes()),
        Value::U16(x) => h.extend_from_slice(&x.to_le_bytes()),
        Value::I16(x) => h.extend_from_slice(&x.to_le_bytes()),
        Value::U32(x) => h.extend_from_slice(&x.to_le_bytes()),
        Value::I32(x) => h.extend_from_slice(&x.to_le_bytes()),
        Value::F32(x) => h.extend_from_slice(&x.to_le_bytes()),
        Value::U64(x) => h.extend_from_slice(&x.to_le_bytes()),
        Value::I64(x) => h.extend_from_slice(&x.to_le_bytes()),
        Value::F64(x) => h.extend_from_slice(&x.to_le_bytes()),
        Value::Bool(x) => h.push(u8::from(*x)),
        Value::String(s) => put_string(h, s),
        Value::Array(elem_type, items) => {
            h.extend_from_slice(&elem_type.code().to_le_bytes());
            h.extend_from_slice(&(items.len() as u64).to_le_bytes());
            for (i, item) in items.iter().enumerate() {
                ensure!(
                    item.value_type() == *elem_type,
                    "array element {i} is a {:?} in an array of {elem_type:?}",
                    item.value_type()
                );
                put_value(h, item)?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample_metadata() -> Vec<(String, Value)> {
        vec![
            ("a.u8".into(), Value::U8(7)),
            ("a.i8".into(), Value::I8(-7)),
            ("a.u16".into(), Value::U16(700)),
            ("a.i16".into(), Value::I16(-700)),
            ("a.u32".into(), Value::U32(70_000)),
            ("a.i32".into(), Value::I32(-70_000)),
            ("a.f32".into(), Value::F32(1.5)),
            ("a.bool".into(), Value::Bool(true)),
            ("a.string".into(), Value::string("héllo")),
            ("a.u64".into(), Value::U64(1 << 40)),
            ("a.i64".into(), Value::I64(-(1 << 40))),
            ("a.f64".into(), Value::F64(-2.25)),
            ("a.empty".into(), Value::Array(ValueType::I16, vec![])),
            (
                "a.nested".into(),
                Value::Array(
                    ValueType::Array,
                    vec![
                        Value::Array(ValueType::String, vec![Value::string("x"), Value::string("")]),
                        Value::Array(ValueType::U8, vec![]),
                    ],
                ),
            ),
        ]
    }

    #[test]
    fn header_round_trips() {
        let metadata = sample_metadata();
        let specs = vec![
            TensorSpec { name: "n".into(), dims: vec![3], ggml_type: GgmlType::F32 },
            TensorSpec { name: "w".into(), dims: vec![256, 2], ggml_type: GgmlType::Q4K },
            TensorSpec { name: "h".into(), dims: vec![5, 3], ggml_type: GgmlType::F16 },
        ];
        let layout = layout(&metadata, &specs).expect("lays out");
        assert_eq!(layout.header.len() % 32, 0);
        assert_eq!(layout.sizes, vec![12, 288, 30]);
        assert_eq!(layout.tensors.iter().map(|t| t.offset).collect::<Vec<_>>(), vec![0, 32, 320]);
        assert_eq!(layout.file_len, layout.data_offset() + 352);

        let mut bytes = layout.header.clone();
        bytes.resize(layout.file_len as usize, 0);
        let mut r = Reader { inner: &bytes[..], pos: 0, len: bytes.len() as u64 };
        let header = parse_header(&mut r).expect("reads back");
        assert_eq!(header.version, 3);
        assert_eq!(header.metadata, metadata);
        assert_eq!(header.tensors, layout.tensors);
        assert_eq!(header.data_offset, layout.data_offset());
    }

    #[test]
    fn refuses_partial_blocks_and_mixed_arrays() {
        let spec = TensorSpec { name: "w".into(), dims: vec![128, 4], ggml_type: GgmlType::Q4K };
        let err = layout(&[], &[spec]).expect_err("128 is not a whole Q4_K block");
        assert!(format!("{err:#}").contains("not a multiple of the 256 values"), "{err:#}");
        let mixed = vec![("m".into(), Value::Array(ValueType::U8, vec![Value::U8(1), Value::U16(2)]))];
        assert!(layout(&mixed, &[]).is_err());
    }

    #[test]
    fn refuses_corrupt_headers() {
        let parse = |bytes: &[u8]| {
            let mut r = Reader { inner: bytes, pos: 0, len: bytes.len() as u64 };
            parse_header(&mut r).map(|_| ()).map_err(|e| format!("{e:#}"))
        };
        assert!(parse(b"GGML\x03\0\0\0").expect_err("bad magic").contains("magic"));
        let mut huge_count = b"GGUF\x03\0\0\0".to_vec();
        huge_count.extend_from_slice(&0u64.to_le_bytes());
        huge_count.extend_from_slice(&u64::MAX.to_le_bytes());
        assert!(parse(&huge_count).expect_err("absurd count").contains("metadata entries"));
        // One entry whose string value claims more bytes than there are.
        let mut long_string = b"GGUF\x03\0\0\0".to_vec();
        long_string.extend_from_slice(&0u64.to_le_bytes());
        long_string.extend_from_slice(&1u64.to_le_bytes());
        put_string(&mut long_string, b"k");
        long_string.extend_from_slice(&8u32.to_le_bytes());
        long_string.extend_from_slice(&(1u64 << 50).to_le_bytes());
        long_string.extend_from_slice(&[0; 8]);
        assert!(parse(&long_string).expect_err("string too long").contains("claims"));
    }
}
