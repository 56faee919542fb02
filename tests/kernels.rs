//! The CPU kernels the conductor patches into candle-core
//! (`vendor/candle-core`, see `vendor/README.md`), checked against
//! candle's own scalar reference on this machine's build:
//!
//! - the AVX2 Q4_1 x Q8_1 dot product against `vec_dot_unopt`;
//! - the column-blocked quantised matmul (prompts, batches) against one
//!   `vec_dot` per output value: it must be bit-identical;
//! - a whole `QMatMul` forward pass against the dequantised f32 matmul.

use candle_core::quantized::k_quants::{self, BlockQ4_1, BlockQ8_0, BlockQ8_1, GgmlType};
use candle_core::quantized::{GgmlDType, QMatMul, QTensor};
use candle_core::{Device, Module, Tensor};

/// A small deterministic generator (xorshift64*): the tests need varied
/// values, not a random-number crate.
struct Values(u64);

impl Values {
    fn next_f32(&mut self) -> f32 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        let bits = self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 40;
        // Uniform in [-1, 1).
        bits as f32 / (1u64 << 23) as f32 - 1.0
    }

    fn vec(&mut self, len: usize, scale: f32) -> Vec<f32> {
        (0..len).map(|_| self.next_f32() * scale).collect()
    }
}

fn quantize<T: GgmlType>(xs: &[f32]) -> Vec<T> {
    let mut blocks = vec![T::zeros(); xs.len() / T::BLCK_SIZE];
    T::from_float(xs, &mut blocks);
    blocks
}

/// Relative difference, guarded near zero.
fn rel(a: f32, b: f32) -> f32 {
    (a - b).abs() / a.abs().max(b.abs()).max(1e-3)
}

#[test]
fn q4_1_dot_product_matches_the_scalar_reference() {
    let mut values = Values(0x9e37_79b9_7f4a_7c15);
    // SmolLM2's inner dimensions (576, 1536) and a long one.
    for k in [32, 64, 576, 1536, 4096] {
        for (w_scale, x_scale, offset) in [(1.0, 1.0, 0.0), (0.02, 3.0, 0.5), (8.0, 0.001, -2.0)] {
            let w: Vec<f32> = values.vec(k, w_scale).into_iter().map(|v| v + offset).collect();
            let x = values.vec(k, x_scale);
            let wq = quantize::<BlockQ4_1>(&w);
            let xq = quantize::<BlockQ8_1>(&x);
            let fast = BlockQ4_1::vec_dot(k, &wq, &xq);
            let reference = BlockQ4_1::vec_dot_unopt(k, &wq, &xq);
            assert!(
                rel(fast, reference) < 1e-5,
                "k={k} scales ({w_scale}, {x_scale}, {offset}): {fast} vs scalar {reference}"
            );
        }
    }
}

#[test]
fn q4_1_dot_product_at_the_extremes() {
    // Every nibble 15 against every Q8 value at +-127: the largest pair
    // sums the 16-bit multiply-add can see.
    let k = 256;
    let w: Vec<f32> = (0..k).map(|i| if i % 32 == 0 { 0.0 } else { 15.0 }).collect();
    for sign in [1.0f32, -1.0] {
        let x = vec![sign; k];
        let wq = quantize::<BlockQ4_1>(&w);
        let xq = quantize::<BlockQ8_1>(&x);
        let fast = BlockQ4_1::vec_dot(k, &wq, &xq);
        let reference = BlockQ4_1::vec_dot_unopt(k, &wq, &xq);
        assert!(rel(fast, reference) < 1e-5, "sign {sign}: {fast} vs scalar {reference}");
        // And both are close to the exact answer.
        let exact: f32 = w.iter().zip(&x).map(|(a, b)| a * b).sum();
        assert!(rel(fast, exact) < 0.02, "sign {sign}: {fast} vs exact {exact}");
    }
}

/// One `vec_dot` per output value: what the blocked matmul must equal,
/// bit for bit.
fn matmul_reference<T: GgmlType>((m, k, n): (usize, usize, usize), lhs: &[f32], rhs_t: &[T]) -> Vec<f32> {
    let kb = k / T::BLCK_SIZE;
    let mut out = vec![0f32; m * n];
    for row in 0..m {
        let lhs_q = quantize::<T::VecDotType>(&lhs[row * k..(row + 1) * k]);
        for col in 0..n {
            out[row * n + col] = T::vec_dot(k, &rhs_t[col * kb..(col + 1) * kb], &lhs_q);
        }
    }
    out
}

fn check_blocked_matmul<T: GgmlType>(name: &str) {
    let mut values = Values(0x0123_4567_89ab_cdef);
    let k = 576;
    // n not a multiple of the 16-column task; m of 1 (decode), a batch,
    // and a prompt.
    for (m, n) in [(1, 200), (2, 576), (7, 1537), (56, 192)] {
        let lhs = values.vec(m * k, 1.0);
        let rhs = quantize::<T>(&values.vec(n * k, 0.1));
        let mut dst = vec![f32::NAN; m * n];
        k_quants::matmul((m, k, n), &lhs, &rhs, &mut dst).expect("matmul");
        let reference = matmul_reference((m, k, n), &lhs, &rhs);
        for (i, (a, b)) in dst.iter().zip(&reference).enumerate() {
            assert!(a.to_bits() == b.to_bits(), "{name} m={m} n={n}: value {i} is {a}, one vec_dot gives {b}");
        }
    }
}

#[test]
fn blocked_matmul_is_bit_identical_to_one_dot_product_per_value() {
    check_blocked_matmul::<BlockQ4_1>("Q4_1");
    check_blocked_matmul::<BlockQ8_0>("Q8_0");
}

#[test]
fn quantised_linear_layer_matches_the_dequantised_one() {
    let mut values = Values(42);
    let (n, k) = (384, 576);
    let weights = Tensor::from_vec(values.vec(n * k, 0.05), (n, k), &Device::Cpu).expect("weights");
    let q = QTensor::quantize(&weights, GgmlDType::Q4_1).expect("quantize");
    let dequantised = q.dequantize(&Device::Cpu).expect("dequantize");
    let layer = QMatMul::from_qtensor(q).expect("qmatmul");
    for rows in [1, 5, 56] {
        let x = Tensor::from_vec(values.vec(rows * k, 1.0), (1, rows, k), &Device::Cpu).expect("x");
        let fast = layer.forward(&x).expect("forward").flatten_all().expect("flat").to_vec1::<f32>().expect("vec");
        let exact = x
            .broadcast_matmul(&dequantised.t().expect("t"))
            .and_then(|t| t.flatten_all())
            .and_then(|t| t.to_vec1::<f32>())
            .expect("f32 matmul");
        // Only the activations' 8-bit quantisation separates the two.
        let worst = fast.iter().zip(&exact).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
        let scale = exact.iter().map(|v| v.abs()).fold(0f32, f32::max);
        assert!(worst < 0.02 * scale, "{rows} rows: worst error {worst} against values up to {scale}");
    }
}
