use std::time::Instant;
use chimera_worker::llm::constrain::*;
use llguidance::api::{GrammarInit, TopLevelGrammar, ParserLimits};
use llguidance::{ParserFactory, Logger};
use super::constrain_fixture::*;

#[test]
fn probe_build_cost() {
    let env = toktrie::ApproximateTokEnv::single_byte_env();
    let mode = std::env::var("PROBE").unwrap_or_default();
    let slices = if mode.contains("noslice") { vec![] } else { llguidance::earley::SlicedBiasComputer::general_slices() };
    let mut pf = ParserFactory::new(&env, Default::default(), &slices).unwrap();
    if mode.contains("noprecompute") { pf.limits_mut().precompute_large_lexemes = false; }
    pf.quiet();
    let cols = test_columns();
    let mut fixed: Vec<(String, FieldValue)> = cols.iter().filter(|(s,_)| s.name != "delta" && s.name != "notes").map(|(s, v)| (s.name.clone(), FieldValue::Fixed(v.clone()))).collect();
    let cases: Vec<(String, Vec<(String, FieldValue)>)> = vec![
        ("empty".into(), vec![]),
        ("fixed only (json)".into(), fixed.clone()),
    ].into_iter().chain(fixed.drain(..).map(|f| (format!("fixed {}", f.0), vec![f]))).chain(cols.iter().map(|(s, _)| (format!("gen {}", s.name), vec![(s.name.clone(), FieldValue::Generate(s.clone()))]))).collect();
    for (label, fields) in &cases {
        let g = RowGrammar::new(fields).unwrap();
        let tl = || if g.is_lark() { TopLevelGrammar::from_lark(g.source()) } else { TopLevelGrammar::from_json_schema(serde_json::from_str(&g.source()).unwrap()) };
        let n = 30;
        let (mut a, mut b, mut c) = (0.0, 0.0, 0.0);
        for _ in 0..n {
            let t0 = Instant::now();
            let (gr, lx) = GrammarInit::Serialized(tl()).to_internal(Some(env.clone()), ParserLimits::default()).unwrap();
            a += t0.elapsed().as_secs_f64();
            let t1 = Instant::now();
            let _cg = GrammarInit::Internal(gr, lx).to_cgrammar(Some(env.clone()), &mut Logger::new(0,0), ParserLimits::default(), pf.extra_lexemes()).unwrap();
            b += t1.elapsed().as_secs_f64();
            let t2 = Instant::now();
            let _p = pf.create_parser(tl()).unwrap();
            c += t2.elapsed().as_secs_f64();
        }
        let f = 1e6 / n as f64;
        eprintln!("{label:24} lark={} to_internal {:6.0} µs, to_cgrammar {:6.0} µs, create_parser {:6.0} µs", g.is_lark(), a * f, b * f, c * f);
    }
}
