//! Schedules: the steps of a load run. Each step is closed loop (N connections, each sending
//! as soon as its previous response is read) or open loop (a rate, constant or ramping, with
//! each request's intended send time computed arithmetically from the step start).

use std::time::Duration;

use serde::Serialize;

/// How one step drives load.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "mode", rename_all = "snake_case")]
pub enum StepLoad {
    /// `connections` connections, each with one request in flight.
    Closed { connections: usize },
    /// Requests at `from` req/s rising linearly to `to` req/s over the step (equal for a
    /// constant rate), using at most `connections` connections.
    Open {
        from: f64,
        to: f64,
        connections: usize,
    },
}

/// One step of a schedule.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Step {
    pub label: String,
    pub load: StepLoad,
    /// How long the step lasts; `None` only in a single-step run bounded by a request count.
    #[serde(serialize_with = "secs")]
    pub duration: Option<Duration>,
}

fn secs<S: serde::Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
    match d {
        Some(d) => s.serialize_f64(d.as_secs_f64()),
        None => s.serialize_none(),
    }
}

impl Step {
    /// Connections the step needs.
    pub fn connections(&self) -> usize {
        match self.load {
            StepLoad::Closed { connections } | StepLoad::Open { connections, .. } => connections,
        }
    }

    /// The highest rate of an open-loop step (requests/s); None for closed-loop steps.
    pub fn peak_rate(&self) -> Option<f64> {
        match self.load {
            StepLoad::Open { from, to, .. } => Some(from.max(to)),
            StepLoad::Closed { .. } => None,
        }
    }

    /// The intended send time of request `i` (0-based) of an open-loop step, from the step
    /// start; `None` for closed-loop steps.
    pub fn intended(&self, i: u64) -> Option<Duration> {
        let StepLoad::Open { from, to, .. } = self.load else {
            return None;
        };
        let i = i as f64;
        let secs = match self.duration {
            Some(d) if (to - from).abs() > f64::EPSILON => {
                // rate(t) = from + a t; requests by t: from t + a t^2 / 2 = i.
                let a = (to - from) / d.as_secs_f64();
                (-from + (from * from + 2.0 * a * i).max(0.0).sqrt()) / a
            }
            _ => i / from,
        };
        Some(Duration::from_secs_f64(secs.max(0.0)))
    }
}

/// A whole run: steps in order.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Schedule {
    pub steps: Vec<Step>,
}

/// A schedule that does not parse, saying where.
#[derive(Debug, thiserror::Error, PartialEq)]
#[error("schedule `{spec}`: {problem} (at `{at}`); forms: sweep:FROM-TO:STEP:DUR, rates:R1,R2,...:DUR, spike:C1,C2,...:DUR[:cooldown=C:DUR], ramp:R0-R1:DUR, steady:C:DUR, rate:R:DUR")]
pub struct ScheduleError {
    pub spec: String,
    pub at: String,
    pub problem: String,
}

impl Schedule {
    /// A single closed-loop step.
    pub fn closed(connections: usize, duration: Option<Duration>) -> Self {
        Self {
            steps: vec![Step {
                label: format!("{connections} connections"),
                load: StepLoad::Closed { connections },
                duration,
            }],
        }
    }

    /// One open-loop step per rate.
    pub fn rates(rates: &[f64], connections: usize, duration: Option<Duration>) -> Self {
        Self {
            steps: rates
                .iter()
                .map(|&r| Step {
                    label: format!("{} req/s", fmt_num(r)),
                    load: StepLoad::Open {
                        from: r,
                        to: r,
                        connections,
                    },
                    duration,
                })
                .collect(),
        }
    }

    /// Total duration, when every step has one.
    pub fn duration(&self) -> Option<Duration> {
        self.steps.iter().map(|s| s.duration).sum()
    }

    /// Most connections any step uses.
    pub fn max_connections(&self) -> usize {
        self.steps.iter().map(Step::connections).max().unwrap_or(0)
    }

    /// Parses `--schedule SPEC`. `connections` is the connection cap of open-loop steps.
    pub fn parse(spec: &str, connections: usize) -> Result<Self, ScheduleError> {
        let err = |at: &str, problem: &str| ScheduleError {
            spec: spec.to_string(),
            at: at.to_string(),
            problem: problem.to_string(),
        };
        let parts: Vec<&str> = spec.split(':').collect();
        let kind = parts[0];
        let field = |i: usize, what: &str| -> Result<&str, ScheduleError> {
            parts
                .get(i)
                .copied()
                .filter(|s| !s.is_empty())
                .ok_or_else(|| err(spec, &format!("missing {what}")))
        };
        let number = |text: &str| -> Result<f64, ScheduleError> {
            text.trim()
                .parse::<f64>()
                .ok()
                .filter(|v| v.is_finite() && *v > 0.0)
                .ok_or_else(|| err(text, "expected a number above zero"))
        };
        let count = |text: &str| -> Result<usize, ScheduleError> {
            text.trim()
                .parse::<usize>()
                .ok()
                .filter(|v| *v > 0)
                .ok_or_else(|| err(text, "expected a whole number above zero"))
        };
        let duration = |text: &str| -> Result<Option<Duration>, ScheduleError> {
            humantime::parse_duration(text.trim())
                .ok()
                .filter(|d| !d.is_zero())
                .map(Some)
                .ok_or_else(|| err(text, "expected a duration like 10s"))
        };
        let range = |text: &str| -> Result<(f64, f64), ScheduleError> {
            let (a, b) = text
                .split_once('-')
                .ok_or_else(|| err(text, "expected FROM-TO"))?;
            Ok((number(a)?, number(b)?))
        };
        let closed = |c: usize, d| Step {
            label: format!("{c} connections"),
            load: StepLoad::Closed { connections: c },
            duration: d,
        };
        let expect_fields = |n: usize| -> Result<(), ScheduleError> {
            if parts.len() > n {
                return Err(err(parts[n], "unexpected field"));
            }
            Ok(())
        };
        let steps = match kind {
            "steady" => {
                expect_fields(3)?;
                vec![closed(
                    count(field(1, "connections")?)?,
                    duration(field(2, "duration")?)?,
                )]
            }
            "rate" => {
                expect_fields(3)?;
                let r = number(field(1, "rate")?)?;
                Self::rates(&[r], connections, duration(field(2, "duration")?)?).steps
            }
            "sweep" => {
                expect_fields(4)?;
                let (from, to) = range(field(1, "FROM-TO")?)?;
                let step = count(field(2, "step")?)?;
                let d = duration(field(3, "duration per step")?)?;
                if to < from {
                    return Err(err(parts[1], "TO is below FROM"));
                }
                let (from, to) = (from as usize, to as usize);
                (from..=to).step_by(step).map(|c| closed(c, d)).collect()
            }
            "rates" => {
                expect_fields(3)?;
                let rates = field(1, "rates")?
                    .split(',')
                    .map(number)
                    .collect::<Result<Vec<_>, _>>()?;
                Self::rates(
                    &rates,
                    connections,
                    duration(field(2, "duration per step")?)?,
                )
                .steps
            }
            "spike" => {
                let levels = field(1, "connection levels")?
                    .split(',')
                    .map(count)
                    .collect::<Result<Vec<_>, _>>()?;
                let d = duration(field(2, "duration per step")?)?;
                let mut steps: Vec<Step> = levels.iter().map(|&c| closed(c, d)).collect();
                let (cool, cool_d) = match parts.get(3) {
                    None => (levels[0], d),
                    Some(f) => {
                        let c = f
                            .strip_prefix("cooldown=")
                            .ok_or_else(|| err(f, "expected cooldown=C"))?;
                        expect_fields(5)?;
                        (count(c)?, duration(field(4, "cool-down duration")?)?)
                    }
                };
                let mut cooldown = closed(cool, cool_d);
                cooldown.label = format!("cool-down {cool} connections");
                steps.push(cooldown);
                steps
            }
            "ramp" => {
                expect_fields(3)?;
                let (from, to) = range(field(1, "R0-R1")?)?;
                vec![Step {
                    label: format!("ramp {}-{} req/s", fmt_num(from), fmt_num(to)),
                    load: StepLoad::Open {
                        from,
                        to,
                        connections,
                    },
                    duration: duration(field(2, "duration")?)?,
                }]
            }
            other => return Err(err(other, "unknown schedule kind")),
        };
        Ok(Self { steps })
    }
}

fn fmt_num(v: f64) -> String {
    if v.fract() == 0.0 {
        format!("{v:.0}")
    } else {
        format!("{v}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(s: u64) -> Option<Duration> {
        Some(Duration::from_secs(s))
    }

    #[test]
    fn sweep_steps_connections() {
        let s = Schedule::parse("sweep:50-1000:50:10s", 64).unwrap();
        assert_eq!(s.steps.len(), 20);
        assert_eq!(s.steps[0].load, StepLoad::Closed { connections: 50 });
        assert_eq!(s.steps[19].load, StepLoad::Closed { connections: 1000 });
        assert_eq!(s.duration(), secs(200));
        assert_eq!(s.max_connections(), 1000);
    }

    #[test]
    fn spike_ends_with_a_cool_down() {
        let s = Schedule::parse("spike:10,100,250,500:15s", 64).unwrap();
        let conns: Vec<usize> = s.steps.iter().map(Step::connections).collect();
        assert_eq!(conns, vec![10, 100, 250, 500, 10]);
        let s = Schedule::parse("spike:10,500:15s:cooldown=5:30s", 64).unwrap();
        assert_eq!(s.steps[2].connections(), 5);
        assert_eq!(s.steps[2].duration, secs(30));
    }

    #[test]
    fn rates_are_open_loop() {
        let s = Schedule::parse("rates:1000,2000:10s", 32).unwrap();
        assert_eq!(
            s.steps[1].load,
            StepLoad::Open {
                from: 2000.0,
                to: 2000.0,
                connections: 32
            }
        );
        assert_eq!(s.steps[1].intended(1000), Some(Duration::from_millis(500)));
    }

    #[test]
    fn a_ramp_sends_the_integral_of_its_rate() {
        let s = Schedule::parse("ramp:100-300:10s", 8).unwrap();
        let step = &s.steps[0];
        // 100..300 req/s over 10 s: 2000 requests in all, the 2000th at 10 s.
        let last = step.intended(2000).unwrap().as_secs_f64();
        assert!((last - 10.0).abs() < 1e-6, "{last}");
        // After 5 s: 100*5 + 20*25/2 = 750 requests.
        let mid = step.intended(750).unwrap().as_secs_f64();
        assert!((mid - 5.0).abs() < 1e-6, "{mid}");
    }

    #[test]
    fn errors_say_where() {
        let e = Schedule::parse("sweep:50-x:50:10s", 1).unwrap_err();
        assert_eq!(e.at, "x");
        assert!(e
            .to_string()
            .starts_with("schedule `sweep:50-x:50:10s`: expected a number above zero (at `x`)"));
        assert_eq!(Schedule::parse("zigzag:1:1s", 1).unwrap_err().at, "zigzag");
        assert_eq!(
            Schedule::parse("rates:1000:soon", 1).unwrap_err().at,
            "soon"
        );
        assert_eq!(
            Schedule::parse("steady:10", 1).unwrap_err().problem,
            "missing duration"
        );
        assert_eq!(
            Schedule::parse("steady:10:1s:extra", 1).unwrap_err().at,
            "extra"
        );
        assert_eq!(
            Schedule::parse("sweep:100-50:10:1s", 1)
                .unwrap_err()
                .problem,
            "TO is below FROM"
        );
    }
}
