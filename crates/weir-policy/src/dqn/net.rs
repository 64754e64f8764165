//! The Q-network: a small MLP (ReLU between layers) on candle's CPU device.
//!
//! Weights are initialised here from [`weir_core::rng::Rng`] (Kaiming-uniform), never by
//! candle's own random init, so that a training run is reproducible for a seed. A [`Net`] is
//! immutable (plain tensors: serving, the target network); a [`TrainNet`] holds the same
//! layers as `Var`s for the optimiser, and [`TrainNet::snapshot`] deep-copies them into a
//! [`Net`] (a `Var` is updated in place, so a shallow clone would follow the training).

use candle_core::{DType, Device, Result, Tensor, Var};
use candle_nn::{Linear, Module};
use weir_core::rng::Rng;

/// One dense layer: weight `(out, in)` and bias `(out)`.
#[derive(Debug, Clone)]
pub struct Layer {
    /// Weight matrix, `(out, in)`.
    pub weight: Tensor,
    /// Bias vector, `(out)`.
    pub bias: Tensor,
}

/// An immutable MLP.
#[derive(Debug, Clone)]
pub struct Net {
    layers: Vec<Layer>,
}

/// Layer sizes of a network: input, hidden..., output.
pub fn sizes(inputs: usize, hidden: &[usize], outputs: usize) -> Vec<usize> {
    let mut s = Vec::with_capacity(hidden.len() + 2);
    s.push(inputs);
    s.extend_from_slice(hidden);
    s.push(outputs);
    s
}

fn forward_layers<'a>(
    layers: impl ExactSizeIterator<Item = (&'a Tensor, &'a Tensor)>,
    x: &Tensor,
) -> Result<Tensor> {
    let n = layers.len();
    let mut h = x.clone();
    for (k, (w, b)) in layers.enumerate() {
        h = Linear::new(w.clone(), Some(b.clone())).forward(&h)?;
        if k + 1 < n {
            h = h.relu()?;
        }
    }
    Ok(h)
}

impl Net {
    /// A network from its layers (shapes are checked by the caller).
    pub fn from_layers(layers: Vec<Layer>) -> Net {
        Net { layers }
    }

    /// The layers.
    pub fn layers(&self) -> &[Layer] {
        &self.layers
    }

    /// Kaiming-uniform initialisation from `rng` (weights uniform in ±√(6/fan_in), the last
    /// layer scaled down so initial Q-values are near zero; biases zero).
    pub fn init(sizes: &[usize], rng: &mut Rng) -> Result<Net> {
        let dev = Device::Cpu;
        let mut layers = Vec::with_capacity(sizes.len().saturating_sub(1));
        for (k, pair) in sizes.windows(2).enumerate() {
            let (fan_in, fan_out) = (pair[0], pair[1]);
            let mut bound = (6.0 / fan_in.max(1) as f64).sqrt();
            if k + 2 == sizes.len() {
                bound *= 0.1;
            }
            let w: Vec<f32> = (0..fan_in * fan_out)
                .map(|_| rng.range(-bound, bound) as f32)
                .collect();
            layers.push(Layer {
                weight: Tensor::from_vec(w, (fan_out, fan_in), &dev)?,
                bias: Tensor::zeros(fan_out, DType::F32, &dev)?,
            });
        }
        Ok(Net { layers })
    }

    /// Input size.
    pub fn inputs(&self) -> usize {
        self.layers
            .first()
            .and_then(|l| l.weight.dims().get(1).copied())
            .unwrap_or(0)
    }

    /// Output size.
    pub fn outputs(&self) -> usize {
        self.layers
            .last()
            .and_then(|l| l.weight.dims().first().copied())
            .unwrap_or(0)
    }

    /// Forward pass on a `(batch, inputs)` tensor.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        forward_layers(self.layers.iter().map(|l| (&l.weight, &l.bias)), x)
    }

    /// Q-values of `rows` inputs laid out row after row in `xs`, row after row.
    pub fn q_rows(&self, xs: &[f32], rows: usize) -> Result<Vec<f32>> {
        let x = Tensor::from_slice(xs, (rows, self.inputs()), &Device::Cpu)?;
        self.forward(&x)?.flatten_all()?.to_vec1::<f32>()
    }

    /// Q-values of one input.
    pub fn q(&self, x: &[f32]) -> Result<Vec<f32>> {
        self.q_rows(x, 1)
    }
}

/// The online network during training: the same layers as `Var`s.
#[derive(Debug)]
pub struct TrainNet {
    vars: Vec<(Var, Var)>,
}

impl TrainNet {
    /// Trainable copies of `net`'s layers.
    pub fn from_net(net: &Net) -> Result<TrainNet> {
        let vars = net
            .layers
            .iter()
            .map(|l| Ok((Var::from_tensor(&l.weight)?, Var::from_tensor(&l.bias)?)))
            .collect::<Result<Vec<_>>>()?;
        Ok(TrainNet { vars })
    }

    /// Every variable, for the optimiser.
    pub fn vars(&self) -> Vec<Var> {
        self.vars
            .iter()
            .flat_map(|(w, b)| [w.clone(), b.clone()])
            .collect()
    }

    /// Forward pass (recorded for backpropagation).
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        forward_layers(
            self.vars
                .iter()
                .map(|(w, b)| (w.as_tensor(), b.as_tensor())),
            x,
        )
    }

    /// A deep copy of the current weights.
    pub fn snapshot(&self) -> Result<Net> {
        let layers = self
            .vars
            .iter()
            .map(|(w, b)| {
                Ok(Layer {
                    weight: w.as_tensor().copy()?.detach(),
                    bias: b.as_tensor().copy()?.detach(),
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Net { layers })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn init_is_deterministic_and_snapshots_do_not_follow_training() {
        let a = Net::init(&[4, 8, 3], &mut Rng::new(5)).unwrap();
        let b = Net::init(&[4, 8, 3], &mut Rng::new(5)).unwrap();
        let x = [0.1f32, -0.2, 0.3, 1.0];
        assert_eq!(a.q(&x).unwrap(), b.q(&x).unwrap());
        assert_eq!(a.inputs(), 4);
        assert_eq!(a.outputs(), 3);
        let t = TrainNet::from_net(&a).unwrap();
        let snap = t.snapshot().unwrap();
        let before = snap.q(&x).unwrap();
        for v in t.vars() {
            v.set(&v.as_tensor().affine(0.0, 1.0).unwrap()).unwrap();
        }
        assert_eq!(snap.q(&x).unwrap(), before);
        assert_eq!(a.q(&x).unwrap(), before);
        assert_ne!(t.snapshot().unwrap().q(&x).unwrap(), before);
    }
}
