//! A model's weights on the GPU: every matrix of the offloaded layers uploaded once, as the
//! file stores it (quantized), and the norm and bias vectors as f32. Layers from
//! `n_gpu_layers` on stay on the CPU (partial offload); the output norm and matrix go to the
//! GPU only when every layer does.

use std::collections::HashMap;
use std::sync::Arc;

use super::kernels::{Kernels, MatShape, View, format_index, split_parts};
use super::moe::{GpuExperts, GpuMoe};
use super::{DevBuf, DevPtr, GpuDevice, GpuStream};
use crate::gguf::{GgufFile, TensorInfo};
use crate::model::transformer::{Ffn, Layer, Qkv, Transformer};
use crate::{Error, Result, quant};

/// One weight matrix on the device.
pub struct GpuMat {
    buf: DevBuf,
    pub shape: MatShape,
}

impl GpuMat {
    pub fn view(&self) -> View {
        self.buf.view()
    }
}

/// A vector of f32 on the device.
pub struct GpuVec {
    buf: DevBuf,
}

impl GpuVec {
    pub fn view(&self) -> View {
        self.buf.view()
    }
}

pub enum GpuQkv {
    Split { q: GpuMat, k: GpuMat, v: GpuMat },
    Fused(GpuMat),
}

pub enum GpuFfn {
    Split {
        gate: GpuMat,
        up: GpuMat,
        down: GpuMat,
    },
    Fused {
        up: GpuMat,
        down: GpuMat,
    },
    Experts(GpuMoe),
}

pub struct GpuLayer {
    pub attn_norm: GpuVec,
    pub qkv: GpuQkv,
    pub bias: [Option<GpuVec>; 3],
    pub q_norm: Option<GpuVec>,
    pub k_norm: Option<GpuVec>,
    pub wo: GpuMat,
    pub post_attn_norm: Option<GpuVec>,
    pub ffn_norm: GpuVec,
    pub ffn: GpuFfn,
    pub post_ffn_norm: Option<GpuVec>,
}

pub struct GpuWeights {
    pub dev: Arc<dyn GpuDevice>,
    pub kernels: Kernels,
    pub token_embd: GpuMat,
    pub layers: Vec<GpuLayer>,
    /// The final norm and output matrix, when every layer is on the GPU (`None` for the
    /// matrix: tied to the embeddings).
    pub head: Option<(GpuVec, Option<GpuMat>)>,
    /// The most weights of any matrix on the device (the f16 scratch of prefill GEMMs).
    pub max_mat_elems: usize,
    /// The formats of the matrices on the device, one bit per index into `FORMATS`.
    pub mat_formats: u32,
    /// Device bytes the weights take (with their f16 copies).
    pub bytes: usize,
    /// f16 copies of the product matrices by device address (`keep_f16`), or none.
    f16: HashMap<DevPtr, DevBuf>,
}

struct Uploader<'a> {
    dev: &'a Arc<dyn GpuDevice>,
    stream: Box<dyn GpuStream>,
    file: &'a GgufFile,
    max_mat_elems: usize,
    mat_formats: u32,
    bytes: usize,
}

impl Uploader<'_> {
    fn bytes_to_device(&mut self, data: &[u8]) -> Result<DevBuf> {
        let buf = DevBuf::new(self.dev, data.len())?;
        // SAFETY: the buffer was just allocated with data.len() bytes.
        unsafe { self.stream.upload(buf.ptr(), data)? };
        self.bytes += data.len();
        Ok(buf)
    }

    /// A matrix for the products: in the split layout where its format has one.
    fn mat(&mut self, t: &TensorInfo) -> Result<GpuMat> {
        self.upload_mat(t, true)
    }

    /// `split`: the integer-dot kernels' split layout where the format has one; else (the
    /// embedding, which the lookup kernels read by rows) the file's blocks.
    fn upload_mat(&mut self, t: &TensorInfo, split: bool) -> Result<GpuMat> {
        let (n_in, n_out) = (t.dims[0] as usize, t.dims[1] as usize);
        let m = self.upload_rows(t, n_in, n_out, split)?;
        self.max_mat_elems = self.max_mat_elems.max(n_in * n_out);
        self.mat_formats |= 1u32.checked_shl(m.shape.format as u32).unwrap_or(0);
        Ok(m)
    }

    /// A stacked expert tensor `[n_in, rows, n_expert]` of layer `layer`, in the file's
    /// blocks (the expert products are fused dequantize-dot ones; they never take the GEMM,
    /// so the tensor counts towards neither `max_mat_elems` nor `mat_formats`).
    fn experts(&mut self, t: &TensorInfo, layer: usize) -> Result<GpuExperts> {
        let dim = |i: usize| t.dims.get(i).map(|&v| v as usize);
        let (Some(n_in), Some(rows), Some(n_expert)) = (dim(0), dim(1), dim(2)) else {
            return Err(Error::Internal(format!(
                "layer {layer}: {} is not a stack of experts",
                t.name
            )));
        };
        let n_out = rows
            .checked_mul(n_expert)
            .ok_or_else(|| Error::Overflow(format!("{}: experts", t.name)))?;
        Ok(GpuExperts {
            mat: self.upload_rows(t, n_in, n_out, false)?,
            rows,
            n_expert,
        })
    }

    /// `n_out` rows of `n_in` weights of `t` to the device.
    fn upload_rows(
        &mut self,
        t: &TensorInfo,
        n_in: usize,
        n_out: usize,
        split: bool,
    ) -> Result<GpuMat> {
        let format = format_index(t.ty, &t.name)?;
        if !n_in.is_multiple_of(8) {
            return Err(Error::Unsupported(format!(
                "{}: rows of {n_in} weights (the GPU kernels take multiples of 8)",
                t.name
            )));
        }
        let row_bytes = quant::row_bytes(t.ty, n_in)?;
        let data = self
            .file
            .tensor_data(t)
            .ok_or_else(|| Error::Internal(format!("{}: no data", t.name)))?;
        if data.len() != row_bytes.saturating_mul(n_out) {
            return Err(Error::Internal(format!("{}: data size", t.name)));
        }
        let parts = split_parts(format).filter(|_| split && n_in.is_multiple_of(32));
        let (buf, heads) = match parts {
            Some((hb, qb)) => {
                let bytes = to_split_layout(data, hb, qb)?;
                let heads = data.len() / (hb + qb) * qb;
                (self.bytes_to_device(&bytes)?, Some(heads))
            }
            None => (self.bytes_to_device(data)?, None),
        };
        Ok(GpuMat {
            buf,
            shape: MatShape {
                format,
                n_out,
                n_in,
                row_bytes,
                heads,
            },
        })
    }

    fn vec(&mut self, v: &[f32]) -> Result<GpuVec> {
        let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
        Ok(GpuVec {
            buf: self.bytes_to_device(&bytes)?,
        })
    }

    fn opt_vec(&mut self, v: &Option<Vec<f32>>) -> Result<Option<GpuVec>> {
        v.as_deref().map(|v| self.vec(v)).transpose()
    }

    fn layer(&mut self, i: usize, l: &Layer) -> Result<GpuLayer> {
        let qkv = match &l.qkv {
            Qkv::Split { q, k, v } => GpuQkv::Split {
                q: self.mat(q)?,
                k: self.mat(k)?,
                v: self.mat(v)?,
            },
            Qkv::Fused(w) => GpuQkv::Fused(self.mat(w)?),
        };
        let ffn = match &l.ffn {
            Ffn::Split { gate, up, down } => GpuFfn::Split {
                gate: self.mat(gate)?,
                up: self.mat(up)?,
                down: self.mat(down)?,
            },
            Ffn::Fused { up, down } => GpuFfn::Fused {
                up: self.mat(up)?,
                down: self.mat(down)?,
            },
            Ffn::Experts(m) => GpuFfn::Experts(GpuMoe {
                router: self.mat(&m.router)?,
                gate: self.experts(&m.gate, i)?,
                up: self.experts(&m.up, i)?,
                down: self.experts(&m.down, i)?,
                n_used: m.n_used,
            }),
        };
        Ok(GpuLayer {
            attn_norm: self.vec(&l.attn_norm)?,
            qkv,
            bias: [
                self.opt_vec(&l.bias[0])?,
                self.opt_vec(&l.bias[1])?,
                self.opt_vec(&l.bias[2])?,
            ],
            q_norm: self.opt_vec(&l.q_norm)?,
            k_norm: self.opt_vec(&l.k_norm)?,
            wo: self.mat(&l.wo)?,
            post_attn_norm: self.opt_vec(&l.post_attn_norm)?,
            ffn_norm: self.vec(&l.ffn_norm)?,
            ffn,
            post_ffn_norm: self.opt_vec(&l.post_ffn_norm)?,
        })
    }
}

/// Blocks of `hb` header and `qb` code bytes, in order, to the split layout: every block's
/// codes, then every block's header (kernels/matvec_q8.cu).
fn to_split_layout(data: &[u8], hb: usize, qb: usize) -> Result<Vec<u8>> {
    let bs = hb + qb;
    if !data.len().is_multiple_of(bs) {
        return Err(Error::Internal("split layout of a partial block".into()));
    }
    let mut out = Vec::new();
    out.try_reserve_exact(data.len())
        .map_err(|_| Error::Oom(format!("{} bytes to lay out a matrix", data.len())))?;
    out.resize(data.len(), 0);
    let (codes, heads) = out.split_at_mut(data.len() / bs * qb);
    for ((blk, c), h) in data
        .chunks_exact(bs)
        .zip(codes.chunks_exact_mut(qb))
        .zip(heads.chunks_exact_mut(hb))
    {
        h.copy_from_slice(&blk[..hb]);
        c.copy_from_slice(&blk[hb..]);
    }
    Ok(out)
}

impl GpuWeights {
    /// Uploads the embeddings and layers `0..n_gpu_layers` (all when larger) of `t`.
    pub fn upload(
        dev: Arc<dyn GpuDevice>,
        t: &Transformer,
        file: &GgufFile,
        n_gpu_layers: usize,
    ) -> Result<GpuWeights> {
        let p = &t.params;
        if p.head_dim > super::kernels::ATTN_MAX_HEAD
            || p.v_head_dim > super::kernels::ATTN_MAX_HEAD
        {
            return Err(Error::Unsupported(format!(
                "heads of {} dimensions (the GPU attention takes at most {})",
                p.head_dim.max(p.v_head_dim),
                super::kernels::ATTN_MAX_HEAD
            )));
        }
        let kernels = Kernels::load(dev.as_ref())?;
        let mut up = Uploader {
            dev: &dev,
            stream: dev.new_stream()?,
            file,
            max_mat_elems: 0,
            mat_formats: 0,
            bytes: 0,
        };
        let token_embd = up.upload_mat(&t.token_embd, false)?;
        let n = n_gpu_layers.min(t.layers.len());
        let layers = t.layers[..n]
            .iter()
            .enumerate()
            .map(|(i, l)| up.layer(i, l))
            .collect::<Result<Vec<_>>>()?;
        let head = if n == t.layers.len() {
            let norm = up.vec(&t.output_norm)?;
            let tied = t.output.name == t.token_embd.name;
            let out = if tied { None } else { Some(up.mat(&t.output)?) };
            Some((norm, out))
        } else {
            None
        };
        up.stream.synchronize()?;
        let (max_mat_elems, mat_formats, bytes) = (up.max_mat_elems, up.mat_formats, up.bytes);
        drop(up);
        let mut w = GpuWeights {
            dev,
            kernels,
            token_embd,
            layers,
            head,
            max_mat_elems,
            mat_formats,
            bytes,
            f16: HashMap::new(),
        };
        w.keep_f16()?;
        Ok(w)
    }

    /// Layers on the GPU.
    pub fn n_layers(&self) -> usize {
        self.layers.len()
    }

    /// The matrices of a decode's products: the layers' (the routers of mixture-of-experts
    /// layers; the experts' own products never take a GEMM), the head's when it is here.
    fn product_mats(&self) -> Vec<&GpuMat> {
        let mut mats: Vec<&GpuMat> = Vec::new();
        for l in &self.layers {
            match &l.qkv {
                GpuQkv::Split { q, k, v } => mats.extend([q, k, v]),
                GpuQkv::Fused(m) => mats.push(m),
            }
            mats.push(&l.wo);
            match &l.ffn {
                GpuFfn::Split { gate, up, down } => mats.extend([gate, up, down]),
                GpuFfn::Fused { up, down } => mats.extend([up, down]),
                GpuFfn::Experts(m) => mats.push(&m.router),
            }
        }
        if let Some((_, out)) = &self.head {
            mats.push(out.as_ref().unwrap_or(&self.token_embd));
        }
        mats
    }

    /// Whether every product of a decode takes the tiled int8 kernels above the
    /// matrix-vector kernels' rows (`Mmq::takes`): then no batch needs the f16 GEMM.
    pub fn all_tiled(&self) -> bool {
        self.product_mats()
            .iter()
            .all(|m| self.kernels.mmq.takes(&m.shape, m.view().ptr))
    }

    /// Makes f16 copies of the product matrices, so that batches through the f16 GEMM skip
    /// dequantizing each matrix every time: where there is a GEMM that some product takes,
    /// and RF_GPU_F16_WEIGHTS=1, or it is unset and the copies take at most a quarter of
    /// the device's free memory (RF_GPU_F16_WEIGHTS=0: never).
    fn keep_f16(&mut self) -> Result<()> {
        if !self.dev.has_gemm() || self.all_tiled() {
            return Ok(());
        }
        let copies = {
            let overflow = || Error::Overflow("f16 weight copies".into());
            let mats = self
                .product_mats()
                .into_iter()
                .map(|m| {
                    Ok((
                        m,
                        m.shape
                            .n_in
                            .checked_mul(m.shape.n_out)
                            .ok_or_else(overflow)?,
                    ))
                })
                .collect::<Result<Vec<_>>>()?;
            let mut bytes = 0usize;
            for &(_, elems) in &mats {
                bytes = elems
                    .checked_mul(2)
                    .and_then(|b| b.checked_add(bytes))
                    .ok_or_else(overflow)?;
            }
            let forced = match std::env::var("RF_GPU_F16_WEIGHTS").as_deref() {
                Ok("1") => true,
                Ok("0") => return Ok(()),
                _ => false,
            };
            if !forced && bytes > self.dev.mem_info()?.0 / 4 {
                return Ok(());
            }
            let mut s = self.dev.new_stream()?;
            let mut copies = HashMap::new();
            for (m, elems) in mats {
                let at = m.view().ptr;
                if copies.contains_key(&at) {
                    continue;
                }
                let buf = match DevBuf::array(&self.dev, elems, 2, "f16 weights") {
                    Ok(b) => b,
                    // Asked for: the error says why. Otherwise the copies were only an
                    // optimization (memory may have gone to another process meanwhile).
                    Err(e) if forced => return Err(e),
                    Err(_) => {
                        // The copies made so far are written before they are freed.
                        s.synchronize()?;
                        return Ok(());
                    }
                };
                self.kernels
                    .deq_f16(s.as_mut(), m.view(), m.shape, buf.view())?;
                copies.insert(at, buf);
            }
            s.synchronize()?;
            copies
        };
        self.bytes += copies.values().map(DevBuf::bytes).sum::<usize>();
        self.f16 = copies;
        Ok(())
    }

    /// The f16 copy of `m` (`keep_f16`), where there is one.
    pub fn f16_of(&self, m: &GpuMat) -> Option<View> {
        self.f16.get(&m.view().ptr).map(DevBuf::view)
    }

    /// Whether the product matrices have f16 copies (then no f16 scratch is needed).
    pub fn has_f16(&self) -> bool {
        !self.f16.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_layout_puts_every_blocks_codes_first_then_its_header() {
        // Three blocks of a 2-byte header and 4 code bytes: header bytes 10 * i + 0..2,
        // codes 10 * i + 2..6.
        let data: Vec<u8> = (0..3u8)
            .flat_map(|i| (0..6u8).map(move |j| 10 * i + j))
            .collect();
        let out = to_split_layout(&data, 2, 4).unwrap();
        let want: Vec<u8> = [
            2, 3, 4, 5, 12, 13, 14, 15, 22, 23, 24, 25, 0, 1, 10, 11, 20, 21,
        ]
        .to_vec();
        assert_eq!(out, want);
        assert!(to_split_layout(&data[..5], 2, 4).is_err());
    }
}
