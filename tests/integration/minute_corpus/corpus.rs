//! The seeded minute-level corpus: per key, requests arrive as a Poisson process whose rate
//! follows the key's shape (as in `quality.rs`), each with a lognormal cost, and each is made
//! visible by the provider 1–5 minutes after it finished (per request). Legitimate bursts
//! (3–5x for 20–40 minutes) and leaks (10–100x the key's busy hour for 40–180 minutes) are
//! mixed in. Only what is visible at a given simulated time is ever served.

const MIN: i64 = 60;
pub const HOUR: i64 = 3_600;
pub const DAY: i64 = 86_400;
/// A request finishing in minute `m` is published at the start of minute `m + lag`,
/// `lag` in `1..=LAGS` (a 60–300 s delay, rounded up to the provider's next minute).
pub const LAGS: usize = 6;
/// Monday 2025-03-03 00:00 UTC: day 0 of every corpus.
pub const START: i64 = 1_740_960_000;
/// A dormant key's "busy hour" for sizing its leaks (its own is about zero).
const DORMANT_BUSY: f64 = 0.5;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Shape {
    Diurnal,
    BusinessHours,
    Sparse,
    NightlyBatch,
    Growth,
    NearZero,
    Dormant,
}

impl Shape {
    pub const ALL: [Shape; 7] = [
        Shape::Diurnal,
        Shape::BusinessHours,
        Shape::Sparse,
        Shape::NightlyBatch,
        Shape::Growth,
        Shape::NearZero,
        Shape::Dormant,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Shape::Diurnal => "diurnal",
            Shape::BusinessHours => "business",
            Shape::Sparse => "sparse",
            Shape::NightlyBatch => "nightly",
            Shape::Growth => "growth",
            Shape::NearZero => "near-zero",
            Shape::Dormant => "dormant",
        }
    }

    /// Mean cost of one request (USD) and the lognormal sigma of request costs.
    fn request_size(self, base: f64) -> (f64, f64) {
        match self {
            Shape::Diurnal | Shape::Growth => (0.02, 1.0),
            Shape::BusinessHours => (0.03, 1.0),
            Shape::NightlyBatch => (0.01, 1.0),
            // Occasional large single requests: about one every two hours.
            Shape::Sparse => (base, 0.7),
            Shape::NearZero => (0.0005, 0.5),
            Shape::Dormant => (0.005, 0.3),
        }
    }
}

/// How leaks are placed.
#[derive(Debug, Clone)]
pub enum LeakPlan {
    /// `per_key` leaks on every key but each shape's third (and none on near-zero keys), at
    /// random minutes of the replayed days; multiples and lengths uniform in the ranges
    /// (multiples log-uniform). With `specials`, the first diurnal key's first leak starts at
    /// minute 55 of an hour and the first business key's first leak is 10x for 100 minutes
    /// from 11:10 on a weekday (straddling two clock hours, neither reaching 10x).
    Random {
        per_key: usize,
        multiple: (f64, f64),
        minutes: (i64, i64),
        specials: bool,
    },
    /// Exactly these leaks: (key index, start as seconds after [`START`], minutes, multiple).
    Fixed(Vec<(usize, i64, i64, f64)>),
}

#[derive(Debug, Clone)]
pub struct Spec {
    pub seed: u64,
    pub days: i64,
    /// Days of history before the first replayed poll (no leaks there).
    pub baseline_days: i64,
    pub shapes: Vec<Shape>,
    pub keys_per_shape: usize,
    pub leaks: LeakPlan,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Leak {
    pub start: i64,
    pub end: i64,
    /// Leak spend per hour as a multiple of the key's busy hour.
    pub multiple: f64,
}

pub struct Key {
    pub id: String,
    pub name: String,
    pub shape: Shape,
    /// The key's busy hour: 0.9-quantile of its hourly spend over the baseline days (USD), at
    /// least $0.50 for dormant keys (it sizes their leaks).
    pub busy: f64,
    pub leaks: Vec<Leak>,
    /// Per minute since [`START`]: cumulative USD published by lag 1..=LAGS.
    minutes: Vec<[f32; LAGS]>,
}

pub struct Corpus {
    pub spec: Spec,
    pub keys: Vec<Key>,
}

impl Key {
    /// USD of the minute starting at `t` the provider has published by `now`.
    pub fn visible(&self, t: i64, now: i64) -> f64 {
        let m = (t - START).div_euclid(MIN);
        let Some(slots) = usize::try_from(m).ok().and_then(|m| self.minutes.get(m)) else {
            return 0.0;
        };
        let lag = now.div_euclid(MIN) - t.div_euclid(MIN);
        match lag {
            l if l < 1 => 0.0,
            l => f64::from(slots[(l as usize).min(LAGS) - 1]),
        }
    }

    /// USD in `[from, to)` published by `now`.
    pub fn visible_between(&self, from: i64, to: i64, now: i64) -> f64 {
        (from.div_euclid(MIN)..to.div_euclid(MIN))
            .map(|m| self.visible(m * MIN, now))
            .sum()
    }
}

impl Corpus {
    pub fn end(&self) -> i64 {
        START + self.spec.days * DAY
    }

    /// When the replay starts: the end of the baseline days.
    pub fn replay_start(&self) -> i64 {
        START + self.spec.baseline_days * DAY
    }

    pub fn generate(spec: Spec) -> Self {
        let mut rng = fastrand::Rng::with_seed(spec.seed);
        let mut keys = Vec::new();
        for &shape in &spec.shapes {
            for i in 0..spec.keys_per_shape {
                let base = [0.5, 1.0, 2.0, 5.0, 10.0, 20.0][i % 6];
                let mut minutes = vec![[0f32; LAGS]; (spec.days * 1440) as usize];
                normal_traffic(&spec, shape, base, &mut minutes, &mut rng);
                let hourly = hourly_settled(&minutes, spec.baseline_days);
                let mut busy = quantile(hourly, 0.9);
                if shape == Shape::Dormant {
                    busy = busy.max(DORMANT_BUSY);
                }
                keys.push(Key {
                    id: format!("apikey_mc_{:02}", keys.len()),
                    name: format!("{}-{i}", shape.name()),
                    shape,
                    busy,
                    leaks: Vec::new(),
                    minutes,
                });
            }
        }
        let plan = place_leaks(&spec, &keys, &mut rng);
        for (k, leak) in plan {
            let key = &mut keys[k];
            let per_minute = leak.multiple * key.busy / 60.0;
            for t in (leak.start..leak.end).step_by(MIN as usize) {
                let m = ((t - START) / MIN) as usize;
                add_requests(&mut key.minutes[m], per_minute, 0.05, 0.5, &mut rng);
            }
            key.leaks.push(leak);
        }
        for key in &mut keys {
            key.leaks.sort_by_key(|l| l.start);
            for slots in &mut key.minutes {
                for l in 1..LAGS {
                    slots[l] += slots[l - 1];
                }
            }
        }
        Self { spec, keys }
    }
}

fn normal01(rng: &mut fastrand::Rng) -> f64 {
    let (u1, u2) = (rng.f64().max(1e-12), rng.f64());
    (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
}

/// A lognormal factor with mean 1.
fn lognormal(rng: &mut fastrand::Rng, sigma: f64) -> f64 {
    (sigma * normal01(rng) - sigma * sigma / 2.0).exp()
}

fn poisson(rng: &mut fastrand::Rng, lambda: f64) -> u64 {
    if lambda <= 0.0 {
        return 0;
    }
    if lambda > 30.0 {
        return (lambda + lambda.sqrt() * normal01(rng)).round().max(0.0) as u64;
    }
    let (limit, mut p, mut k) = ((-lambda).exp(), 1.0, 0);
    loop {
        p *= rng.f64();
        if p <= limit {
            return k;
        }
        k += 1;
    }
}

/// Adds one minute of Poisson requests spending `usd` on average, each with its publication lag
/// (not yet cumulative).
fn add_requests(
    slots: &mut [f32; LAGS],
    usd: f64,
    mean_size: f64,
    sigma: f64,
    rng: &mut fastrand::Rng,
) {
    for _ in 0..poisson(rng, usd / mean_size) {
        let finished = rng.f64() * 60.0;
        let delay = 60.0 + rng.f64() * 240.0;
        let lag = ((finished + delay) / 60.0).ceil() as usize;
        slots[lag.clamp(1, LAGS) - 1] += (mean_size * lognormal(rng, sigma)) as f32;
    }
}

fn bump(hour: f64) -> f64 {
    (-((hour - 15.0).powi(2)) / 18.0).exp()
}

/// The shape's expected spend in USD per hour at minute `m` (before noise and bursts).
fn shape_rate(shape: Shape, base: f64, m: i64, days: i64) -> f64 {
    let hour = (m % 1440) as f64 / 60.0;
    let weekend = (m / 1440) % 7 >= 5;
    match shape {
        Shape::Diurnal => base * (0.3 + 0.7 * bump(hour)) * if weekend { 0.3 } else { 1.0 },
        Shape::BusinessHours if !weekend && (9.0..18.0).contains(&hour) => base,
        Shape::BusinessHours => 0.0,
        Shape::Sparse => 0.5 * base,
        Shape::NightlyBatch => {
            base * (0.5 + 0.5 * bump(hour)) * if hour.floor() == 2.0 { 4.0 } else { 1.0 }
        }
        Shape::Growth => base * (0.3 + 0.7 * bump(hour)) * (1.0 + m as f64 / (days * 1440) as f64),
        Shape::NearZero => 0.001,
        Shape::Dormant => 0.005 / 24.0,
    }
}

/// Normal traffic with hour-to-hour noise and legitimate bursts, into `minutes`.
fn normal_traffic(
    spec: &Spec,
    shape: Shape,
    base: f64,
    minutes: &mut [[f32; LAGS]],
    rng: &mut fastrand::Rng,
) {
    let noise_sigma = match shape {
        Shape::Diurnal | Shape::Growth => 0.25,
        Shape::BusinessHours => 0.3,
        Shape::NightlyBatch => 0.2,
        _ => 0.0,
    };
    let total = minutes.len() as i64;
    // About one burst a day on keys with real traffic.
    let mut bursts = Vec::new();
    if !matches!(shape, Shape::NearZero | Shape::Dormant) {
        for _ in 0..spec.days {
            let start = rng.i64(0..total);
            bursts.push((start, start + rng.i64(20..=40), 3.0 + 2.0 * rng.f64()));
        }
    }
    let (mean_size, sigma) = shape.request_size(base);
    let mut noise = 1.0;
    for m in 0..total {
        if m % 60 == 0 {
            noise = lognormal(rng, noise_sigma);
            // Near-zero keys: one $0.02 blip in 2 % of hours.
            if shape == Shape::NearZero && rng.f64() < 0.02 {
                let at = (m + rng.i64(0..60)) as usize;
                minutes[at][rng.usize(1..LAGS)] += 0.02;
            }
        }
        let burst = bursts
            .iter()
            .find(|(s, e, _)| (*s..*e).contains(&m))
            .map_or(1.0, |b| b.2);
        let usd = shape_rate(shape, base, m, spec.days) * noise * burst / 60.0;
        add_requests(&mut minutes[m as usize], usd, mean_size, sigma, rng);
    }
}

/// Settled hourly spend over the first `days` days.
fn hourly_settled(minutes: &[[f32; LAGS]], days: i64) -> Vec<f64> {
    minutes[..(days * 1440) as usize]
        .chunks(60)
        .map(|h| {
            h.iter()
                .map(|s| s.iter().map(|v| f64::from(*v)).sum::<f64>())
                .sum()
        })
        .collect()
}

pub fn quantile(mut v: Vec<f64>, q: f64) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(f64::total_cmp);
    let i = ((v.len() as f64 * q).ceil() as usize).clamp(1, v.len()) - 1;
    v[i]
}

fn place_leaks(spec: &Spec, keys: &[Key], rng: &mut fastrand::Rng) -> Vec<(usize, Leak)> {
    let leak = |start: i64, minutes: i64, multiple: f64| Leak {
        start,
        end: start + minutes * MIN,
        multiple,
    };
    let (per_key, multiple, minutes, specials) = match &spec.leaks {
        LeakPlan::Fixed(list) => {
            return list
                .iter()
                .map(|&(k, at, mins, x)| (k, leak(START + at, mins, x)))
                .collect()
        }
        LeakPlan::Random {
            per_key,
            multiple,
            minutes,
            specials,
        } => (*per_key, *multiple, *minutes, *specials),
    };
    // Leaks start after the baseline days and end 4 hours before the corpus does, one per slot.
    let first = START + spec.baseline_days * DAY + 2 * HOUR;
    let last = START + spec.days * DAY - 4 * HOUR - minutes.1 * MIN;
    let slot = (last - first) / per_key.max(1) as i64;
    let mut out = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for (k, key) in keys.iter().enumerate() {
        let index = k % spec.keys_per_shape;
        if key.shape == Shape::NearZero || index == 2 {
            continue;
        }
        for n in 0..per_key {
            let start = first + n as i64 * slot + rng.i64(0..slot / MIN) * MIN;
            let x = multiple.0 * (multiple.1 / multiple.0).powf(rng.f64());
            let mins = rng.i64(minutes.0..=minutes.1);
            let first_of_shape = index == 0 && n == 0 && seen.insert(key.shape);
            out.push((
                k,
                match key.shape {
                    Shape::Diurnal if specials && first_of_shape => {
                        leak(start.div_euclid(HOUR) * HOUR + 55 * MIN, mins, x)
                    }
                    Shape::BusinessHours if specials && first_of_shape => {
                        let mut day = (first + n as i64 * slot).div_euclid(DAY) * DAY + DAY;
                        while ((day - START) / DAY) % 7 >= 5 {
                            day += DAY;
                        }
                        leak(day + 11 * HOUR + 10 * MIN, 100, 10.0)
                    }
                    _ => leak(start, mins, x),
                },
            ));
        }
    }
    out
}
