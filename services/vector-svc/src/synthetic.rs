//! Deterministic synthetic embeddings for benchmarks and tests: unit vectors scattered around
//! random cluster centres, which is how real embedding sets look to an IVF index (uniform random
//! vectors would make every index look bad and every recall figure meaningless).

/// SplitMix64: small, fast and reproducible across platforms.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Standard normal (Box-Muller).
    pub fn normal(&mut self) -> f32 {
        let u1 = self.unit().max(1e-12);
        let u2 = self.unit();
        ((-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()) as f32
    }
}

pub fn normalize(v: &mut [f32]) {
    let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if n > 0.0 {
        v.iter_mut().for_each(|x| *x /= n);
    }
}

/// `n` unit vectors of dimension `dim` around `clusters` centres, row-major. `spread` is the
/// noise scale relative to the centre (0.5 to 1.0 resembles sentence embeddings).
pub fn clustered(n: usize, dim: usize, clusters: usize, spread: f32, seed: u64) -> Vec<f32> {
    clustered_split(n, 0, dim, clusters, spread, seed).0
}

/// `n` data vectors and `q` queries drawn from the same clusters (queries are not data points).
pub fn clustered_split(
    n: usize,
    q: usize,
    dim: usize,
    clusters: usize,
    spread: f32,
    seed: u64,
) -> (Vec<f32>, Vec<f32>) {
    let mut rng = Rng::new(seed);
    let centres: Vec<Vec<f32>> = (0..clusters.max(1))
        .map(|_| {
            let mut c: Vec<f32> = (0..dim).map(|_| rng.normal()).collect();
            normalize(&mut c);
            c
        })
        .collect();
    let noise = spread / (dim as f32).sqrt();
    let point = |rng: &mut Rng| {
        let c = &centres[(rng.next_u64() % centres.len() as u64) as usize];
        let mut v: Vec<f32> = c.iter().map(|x| x + noise * rng.normal()).collect();
        normalize(&mut v);
        v
    };
    let mut data = Vec::with_capacity(n * dim);
    for _ in 0..n {
        data.extend(point(&mut rng));
    }
    let mut queries = Vec::with_capacity(q * dim);
    for _ in 0..q {
        queries.extend(point(&mut rng));
    }
    (data, queries)
}
