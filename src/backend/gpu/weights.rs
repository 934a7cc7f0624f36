//! A model's weights on the GPU: every matrix of the offloaded layers uploaded once, as the
//! file stores it (quantized), and the norm and bias vectors as f32. Layers from
//! `n_gpu_layers` on stay on the CPU (partial offload); the output norm and matrix go to the
//! GPU only when every layer does.

use std::sync::Arc;

use super::kernels::{Kernels, MatShape, View, format_index};
use super::{DevBuf, GpuDevice, GpuStream};
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
    /// Device bytes the weights take.
    pub bytes: usize,
}

struct Uploader<'a> {
    dev: &'a Arc<dyn GpuDevice>,
    stream: Box<dyn GpuStream>,
    file: &'a GgufFile,
    max_mat_elems: usize,
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

    fn mat(&mut self, t: &TensorInfo) -> Result<GpuMat> {
        let format = format_index(t.ty, &t.name)?;
        let (n_in, n_out) = (t.dims[0] as usize, t.dims[1] as usize);
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
        self.max_mat_elems = self.max_mat_elems.max(n_in * n_out);
        Ok(GpuMat {
            buf: self.bytes_to_device(data)?,
            shape: MatShape {
                format,
                n_out,
                n_in,
                row_bytes,
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
            Ffn::Experts(_) => {
                return Err(Error::Unsupported(format!(
                    "layer {i}: mixture-of-experts layers have no GPU kernels yet"
                )));
            }
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
            bytes: 0,
        };
        let token_embd = up.mat(&t.token_embd)?;
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
        let (max_mat_elems, bytes) = (up.max_mat_elems, up.bytes);
        drop(up);
        Ok(GpuWeights {
            dev,
            kernels,
            token_embd,
            layers,
            head,
            max_mat_elems,
            bytes,
        })
    }

    /// Layers on the GPU.
    pub fn n_layers(&self) -> usize {
        self.layers.len()
    }
}
