//! The fit, as pure computation over what the coordinator counted: domains from column
//! statistics, the structure from an encoded sample, the conditional tables from full counts.
//! Under DP every release from the data goes through a mechanism charged to the ledger.

use std::collections::HashMap;

use rand::SeedableRng;
use rand_chacha::ChaCha20Rng;

use crate::bayesnet::{
    self, BayesNet, CodedTable, CountNoise, Edge, Forced, Score, SearchSettings, Selection,
};
use crate::domain::{self, CategoricalEncoding, Code, Encoding, NumericShape};
use crate::error::{CoreError, Result};
use crate::grid;
use crate::idformat::IdFormat;
use crate::model::{ColumnModel, FitSettingsRecord, MODEL_FORMAT, Model, ModelPrivacy};
use crate::privacy::{self, Ledger, PrivacyMode};
use crate::profile::{self, ColumnStats};
use crate::schema::{ColumnSchema, Role, ValueKind, looks_like_identifier};
use crate::spec::Spec;

/// Settings of one fit.
#[derive(Debug, Clone)]
pub struct FitSettings {
    pub privacy: PrivacyMode,
    pub max_parents: Option<usize>,
    pub bins: Option<usize>,
    pub max_categories: usize,
    /// Rows used for the structure search (the counts use every row).
    pub search_rows: usize,
    /// Seed for the DP noise; None draws it from the operating system (the safe default).
    pub noise_seed: Option<u64>,
    /// How an LLM fills text columns, if one does. Then a text column is modelled as its
    /// frequent values plus an `other` code (the joint distribution stays right) and the LLM
    /// writes the value wherever `other` is drawn; without an LLM, a text column is an error.
    pub llm: Option<crate::model::LlmFill>,
    /// Columns the network takes as given (evidence), placed first in the structure so that
    /// the others can be sampled conditioned on known values of them (a child table's model
    /// given its parent's and previous sibling's values). Names of columns not in the network
    /// are ignored.
    pub given: Vec<String>,
    /// Most rows one individual contributes to the table (a child table clipped at k children
    /// per parent: k). Under DP every mechanism's sensitivity is scaled by it.
    pub contribution: f64,
    /// Columns a relational fit derives (a child's columns in the flat row; every column of a
    /// sequence model): under DP whether they hold any value must not show in the model's
    /// shape, so they are fitted from the noise even when empty, and one whose release holds
    /// no value is sampled empty (the notes say which) instead of stopping the fit. A table
    /// whose columns are all derived may have no rows. Columns the user gives are checked as
    /// usual.
    pub derived: Vec<String>,
    /// Values a column takes only on a parent's last child (`last_when` in a relational spec),
    /// or on every last child (`last_is`).
    pub last_only: Vec<LastOnly>,
    /// Parents the network must give a column, as (column, parent), besides the spec's
    /// `parents`: what a relational fit knows a column needs.
    pub parents: Vec<(String, String)>,
    /// Columns whose presence a count or a position decides (a first child's place in time).
    pub set_where: Vec<SetWhere>,
    /// Columns the search never gives another column as a learnt parent (a declared parent
    /// may still name one, and is then outside the cell cap): a sequence model's presence
    /// columns of the parent and the previous sibling, which would otherwise crowd a small
    /// table's network with what the given columns already say.
    pub leaves: Vec<String>,
    /// Numbers drawn within a band column's band ([`Within`]).
    pub within: Vec<Within>,
    /// Values the spec's rules name, as (column, value): each keeps a code of its own under DP
    /// however rare (a `first_where` value), as a `last_when` value does.
    pub kept: Vec<(String, String)>,
}

/// A number `column` drawn within the band that `by` (a column of the band's index, 0 to
/// `cuts.len()`) says: `by` is its parent, its bins are cut at `cuts`, and wherever `by` is
/// band `i` its conditional tables give no weight to its codes outside
/// [`cuts[i - 1]`, `cuts[i]`) (post-processing). See `relational::RowColumn::Band`.
#[derive(Debug, Clone, PartialEq)]
pub struct Within {
    pub column: String,
    pub by: String,
    pub cuts: Vec<f64>,
}

/// A value that only a parent's last child may hold (e.g. a death in hospital ends a patient's
/// admissions), or that every last child holds (a discharge ends an admission's transfers):
/// `column` always has `position` as a parent, and wherever `position` says a later sibling
/// follows, its conditional tables give `value` no weight (`only_last`); wherever it says the
/// row is the last, all of it (`always`). Post-processing, so it holds under DP too.
#[derive(Debug, Clone, PartialEq)]
pub struct LastOnly {
    pub column: String,
    pub value: String,
    /// No row but the last holds the value (`last_when`).
    pub only_last: bool,
    /// The last row always holds it (`last_is`).
    pub always: bool,
    /// The column that tells whether the row is the last child: `#remaining` in a sequence
    /// model, the child count for the first child in the flat row.
    pub position: String,
    /// The value of `position` on a last child (0 remaining; a count of 1).
    pub last: f64,
}

/// A column set exactly where a numeric column `by` (a count or a position) lies in `set`, and
/// empty elsewhere: a first sibling's place in time is set at position 0 and only there; a
/// first child's columns in the flat row are set where the parent has children. Where `by` is
/// a parent of the column (always when `declare`d and the column has a null code), its
/// conditional tables give the null code no weight where the column is set and all of it where
/// it is empty (post-processing, so it holds under DP too). Codes of `by` that hold values on
/// both sides are left alone.
#[derive(Debug, Clone, PartialEq)]
pub struct SetWhere {
    pub column: String,
    pub by: String,
    pub set: std::ops::Range<f64>,
    /// Whether the column must have `by` as a parent. A parent of many codes can crowd out
    /// better ones under the cell cap, so a relational fit declares it only under DP (where the
    /// noise may put weight on the null code; without DP the data sets the place on every first
    /// child), and only in sequence models (in the flat row "empty" also means "no child").
    pub declare: bool,
}

/// Counts probed for the side of a `set_where` rule each code of `by` is on.
const SET_WHERE_PROBES: u32 = 100_000;

/// Gives `code` no weight in a conditional table's row, the others keeping their proportions
/// (evenly when they had none).
fn rule_out(row: &mut [f32], code: usize) {
    row[code] = 0.0;
    let sum: f32 = row.iter().sum();
    let others = (row.len() - 1).max(1) as f32;
    for (i, p) in row.iter_mut().enumerate() {
        *p = if i == code {
            0.0
        } else if sum > 0.0 {
            *p / sum
        } else {
            1.0 / others
        };
    }
}

/// Gives `code` all the weight in a conditional table's row.
fn only(row: &mut [f32], code: usize) {
    row.iter_mut().for_each(|p| *p = 0.0);
    row[code] = 1.0;
}

/// Calls `edit` with each row of `child`'s conditional table and the code `parent` takes in
/// that row's configuration (post-processing of the estimate). Nothing when `child` is not in
/// the network or has no such parent.
fn edit_rows(
    net: &mut BayesNet,
    child: usize,
    parent: usize,
    mut edit: impl FnMut(usize, &mut [f32]),
) {
    let Some(node) = net.nodes.iter_mut().find(|n| n.child == child) else {
        return;
    };
    let Some(k) = node.parents.iter().position(|&p| p == parent) else {
        return;
    };
    let stride: usize = node.parent_cards[..k].iter().product();
    let pc = node.parent_cards[k];
    for (c, row) in node.probs.chunks_mut(node.card).enumerate() {
        edit((c / stride) % pc, row);
    }
}

/// A spec's `empty_when` rule on a network: `column` (an attribute) takes its `null` code
/// wherever `condition` (an attribute) takes `code`.
struct EmptyRule {
    column: usize,
    condition: usize,
    code: usize,
    null: usize,
    /// The column is `required`: empty nowhere else.
    required: bool,
    /// The rule and the condition as the spec says them, and the column's name, for errors.
    says: String,
    name: String,
    held: String,
}

/// Without DP, a text column's values seen fewer times than this are left to the LLM (the
/// long tail), so no rare real string is copied into the output.
pub const TEXT_MIN_COUNT: f64 = 5.0;

impl Default for FitSettings {
    fn default() -> Self {
        FitSettings {
            privacy: PrivacyMode::Dp {
                epsilon: 1.0,
                delta: 1e-9,
            },
            max_parents: None,
            bins: None,
            max_categories: 1000,
            search_rows: 50_000,
            noise_seed: None,
            llm: None,
            given: Vec::new(),
            contribution: 1.0,
            derived: Vec::new(),
            last_only: Vec::new(),
            parents: Vec::new(),
            set_where: Vec::new(),
            leaves: Vec::new(),
            within: Vec::new(),
            kept: Vec::new(),
        }
    }
}

/// Shares of the zCDP budget per stage: domains, one-way marginals, structure, joint tables.
const SHARES: [f64; 4] = [0.15, 0.15, 0.15, 0.55];
/// Under DP, fine-grid buckets whose noisy count is below this many σ are dropped.
const FINE_THRESHOLD: f64 = 1.0;
/// Under DP a conditional table may have at most n / (USEFULNESS * σ) cells.
const USEFULNESS: f64 = 4.0;
/// Without DP a conditional table keeps at least this many rows per cell on average.
const ROWS_PER_CELL: f64 = 6.0;
/// Back-off pseudo-counts: per unit of noise under DP, absolute without. Without DP they are
/// what a parent configuration gives to codes it never holds: at 0.5, 1.2% of the demo's
/// synthetic admissions had two `admit` transfers (the data: none), at 0.1 0.3%, with 2-way
/// similarity and Adult's figures unchanged (BENCHMARKS.md).
const SMOOTHING_DP: f64 = 0.5;
const SMOOTHING_EXACT: f64 = 0.1;
/// Under DP, released categories whose noisy count is below this many σ of the conditional
/// tables are merged into `other` for the network: their rows in a conditional table would be
/// mostly noise. They are still decoded, with their released frequencies.
const MERGE_BELOW: f64 = 3.0;
/// Numeric columns with at most this many values give each value its own code.
const DISCRETE_LIMIT: usize = 32;

/// The state of a fit between the coordinator's passes.
pub struct Fitter {
    table: String,
    schemas: Vec<ColumnSchema>,
    spec: Spec,
    settings: FitSettings,
    ledger: Option<Ledger>,
    rho_domains: f64,
    noise: ChaCha20Rng,
    notes: Vec<String>,
    columns: Vec<ColumnModel>,
    attributes: Vec<usize>,
    rows: f64,
    sigma_one_way: f64,
    sigma_joint: f64,
    one_way: Vec<Vec<f64>>,
    max_cells: f64,
    rows_in_search: usize,
    /// Per attribute, the new code of each code when rare categories were merged.
    code_maps: Vec<Option<Vec<Code>>>,
}

fn max_parents(s: &FitSettings, spec: &Spec) -> usize {
    spec.fit
        .max_parents
        .or(s.max_parents)
        .unwrap_or(if s.privacy.is_dp() { 2 } else { 3 })
}

fn default_bins(s: &FitSettings, spec: &Spec) -> usize {
    spec.fit
        .bins
        .or(s.bins)
        .unwrap_or(if s.privacy.is_dp() { 16 } else { 24 })
}

impl Fitter {
    /// Starts a fit; validates the spec against the table's columns.
    pub fn new(
        table: &str,
        schemas: Vec<ColumnSchema>,
        spec: Spec,
        settings: FitSettings,
    ) -> Result<Fitter> {
        spec.validate(table, &schemas)?;
        if schemas.is_empty() {
            return Err(CoreError::Table {
                table: table.into(),
                message: "it has no columns".into(),
            });
        }
        let ledger = match settings.privacy {
            PrivacyMode::Dp { epsilon, delta } => Some(Ledger::new(epsilon, delta)?),
            PrivacyMode::None => None,
        };
        let noise = match settings.noise_seed {
            Some(s) => ChaCha20Rng::seed_from_u64(s),
            None => ChaCha20Rng::from_os_rng(),
        };
        let mut notes = Vec::new();
        if settings.noise_seed.is_some() && ledger.is_some() {
            notes.push(
                "the DP noise was drawn from a user-given seed: reproducible, but anyone who knows \
                 the seed can remove the noise; do not publish such a model"
                    .into(),
            );
        }
        if ledger.is_some() && settings.contribution > 1.0 {
            notes.push(format!(
                "table `{table}`: one individual contributes up to {} rows; every mechanism's noise is scaled to that sensitivity (a child table's `max_rows_per_entity` lowers it)",
                settings.contribution
            ));
        }
        Ok(Fitter {
            table: table.into(),
            schemas,
            spec,
            settings,
            ledger,
            rho_domains: 0.0,
            noise,
            notes,
            columns: Vec::new(),
            attributes: Vec::new(),
            rows: 0.0,
            sigma_one_way: 0.0,
            sigma_joint: 0.0,
            one_way: Vec::new(),
            max_cells: 0.0,
            rows_in_search: 0,
            code_maps: Vec::new(),
        })
    }

    fn shares(&self, domains_used: bool) -> [f64; 4] {
        // Renormalised over the stages that are used.
        let d = if domains_used { SHARES[0] } else { 0.0 };
        let t = d + SHARES[1] + SHARES[2] + SHARES[3];
        [d / t, SHARES[1] / t, SHARES[2] / t, SHARES[3] / t]
    }

    fn rho(&self, stage: usize, domains_used: bool) -> f64 {
        self.ledger
            .as_ref()
            .map_or(0.0, |l| l.rho_total * self.shares(domains_used)[stage])
    }

    /// The budget a unit-sensitivity mechanism may use when `rho` is charged for it: with `m`
    /// rows per individual the sensitivity is `m` times larger, which costs `m²` in zCDP.
    fn calibrated(&self, rho: f64) -> f64 {
        let m = self.settings.contribution.max(1.0);
        rho / (m * m)
    }

    /// The partition-selection threshold when one individual may add `contribution` rows.
    fn threshold(&self, sigma: f64, delta: f64, columns: usize) -> f64 {
        let m = self.settings.contribution.max(1.0);
        privacy::selection_threshold(sigma, delta, columns * m.ceil() as usize) + (m - 1.0)
    }

    /// Number of unit-sensitivity mechanisms the domain stage runs for this column. A null is one
    /// more key of the released histogram, so it costs nothing extra.
    fn domain_units(&self, c: &ColumnSchema) -> usize {
        let spec = self.spec.column(&c.name);
        let role = spec.and_then(|s| s.role);
        if matches!(role, Some(Role::Identifier)) {
            return 0;
        }
        match c.kind {
            ValueKind::Boolean | ValueKind::String => 1,
            _ if matches!(role, Some(Role::Categorical)) => 1,
            _ if spec.and_then(|s| s.bounds).is_some() => 1,
            // the coarse support search, then the fine histogram
            _ => 2,
        }
    }

    /// Whether a column's place in the model follows from the releases alone (DP, derived):
    /// fitted when empty, sampled empty when nothing of it was released.
    fn shaped_by_release(&self, column: &str) -> bool {
        self.ledger.is_some() && self.settings.derived.iter().any(|d| d == column)
    }

    /// Whether a string column's role is decided from its released categories (DP, undeclared).
    fn role_from_release(&self, c: &ColumnSchema) -> bool {
        let spec = self.spec.column(&c.name);
        c.kind == ValueKind::String
            && spec.and_then(|s| s.role).is_none()
            && spec.and_then(|s| s.domain.as_ref()).is_none()
    }

    /// Chooses roles and builds every column's domain (the first pass's statistics in, one
    /// statistics entry per column in schema order).
    pub fn plan_columns(&mut self, stats: &[ColumnStats]) -> Result<&[ColumnModel]> {
        if stats.len() != self.schemas.len() {
            return Err(CoreError::Internal(
                "statistics do not match the columns".into(),
            ));
        }
        let rows = stats.first().map_or(0, |s| s.rows);
        let dp = self.ledger.is_some();
        let all_derived = self.schemas.iter().all(|c| self.shaped_by_release(&c.name));
        if rows == 0 && !all_derived {
            return Err(CoreError::Table {
                table: self.table.clone(),
                message: "it has no rows".into(),
            });
        }
        for (c, s) in self.schemas.iter().zip(stats) {
            if !self.shaped_by_release(&c.name) {
                profile::check_column(&self.table, c, s)?;
            }
            // A `required` column is never empty in the data (one with an `empty_when` rule
            // may be where the rule holds: `check_empty_when` checks it).
            let required = self.spec.column(&c.name).filter(|x| x.required);
            if required.is_some_and(|x| x.empty_when.is_empty()) && s.nulls > 0 {
                return Err(CoreError::Column {
                    table: self.table.clone(),
                    column: c.name.clone(),
                    message: format!(
                        "`required` does not hold in the data: {} rows are empty",
                        s.nulls
                    ),
                });
            }
        }
        // One more unit releases the row count, when a string column's role depends on it.
        let needs_rows = dp && self.schemas.iter().any(|c| self.role_from_release(c));
        let units: usize = self
            .schemas
            .iter()
            .map(|c| self.domain_units(c))
            .sum::<usize>()
            + usize::from(needs_rows);
        let domains_used = dp && units > 0;
        self.rho_domains = self.rho(0, domains_used);
        let sigma = if dp {
            privacy::gaussian_sigma(self.calibrated(self.rho_domains), (units as f64).sqrt())
        } else {
            0.0
        };
        if let Some(l) = &mut self.ledger
            && domains_used
        {
            l.charge(
                "domains (categories, bins, spikes, cardinality)",
                self.rho_domains,
            )?;
        }
        let rows_released = if needs_rows {
            rows as f64 + privacy::gaussian(sigma, &mut self.noise)
        } else {
            rows as f64
        };
        // Columns whose released values are discovered from the data (partition selection): the
        // selection δ is split among them.
        let selection_columns = self
            .schemas
            .iter()
            .filter(|c| {
                let spec = self.spec.column(&c.name);
                let role = spec.and_then(|s| s.role);
                let public = spec.and_then(|s| s.domain.as_ref()).is_some();
                let selects = match c.kind {
                    ValueKind::String => !matches!(role, Some(Role::Identifier)),
                    ValueKind::Boolean => false,
                    _ => matches!(role, Some(Role::Categorical)),
                };
                selects && !public
            })
            .count();
        let delta_sel = self.ledger.as_ref().map_or(0.0, |l| l.delta_selection);
        let bins_default = default_bins(&self.settings, &self.spec);

        let mut columns = Vec::with_capacity(stats.len());
        // Columns that released no value (shape from the release only).
        let mut empty: Vec<String> = Vec::new();
        for (c, s) in self.schemas.clone().iter().zip(stats) {
            let spec = self.spec.column(&c.name).cloned();
            let from_release = self.shaped_by_release(&c.name);
            let (choice, encoding) = if dp && self.role_from_release(c) {
                // Under DP the role follows from the released categories, never from an exact
                // distinct count: categorical if the released values cover most rows.
                let tau = self.threshold(sigma, delta_sel, selection_columns);
                let (enc, kept, nulls) =
                    self.categorical(c, s, spec.as_ref(), sigma, tau, false)?;
                let non_null = (rows_released - nulls).max(1.0);
                let share = (kept / non_null).clamp(0.0, 1.0);
                // Nothing released and too few non-empty rows to be text: an empty column.
                if share >= 0.5 || (from_release && kept == 0.0 && non_null < tau) {
                    let choice = profile::RoleChoice {
                        role: Role::Categorical,
                        reason: format!(
                            "strings; released values cover ~{:.0}% of rows",
                            share * 100.0
                        ),
                    };
                    (choice, Some(enc))
                } else if looks_like_identifier(&c.name) {
                    let choice = profile::RoleChoice {
                        role: Role::Identifier,
                        reason: "the name reads like a key and few values repeat".into(),
                    };
                    (choice, None)
                } else {
                    let choice = profile::RoleChoice {
                        role: Role::Text,
                        reason: format!(
                            "values repeat too rarely to release under DP: released values \
                             cover ~{:.0}% of rows, and a value needs about {:.0} rows; if it is \
                             categorical, declare its domain in the spec or raise epsilon",
                            share * 100.0,
                            self.threshold(sigma, delta_sel, selection_columns)
                        ),
                    };
                    let llm = self.settings.llm.is_some();
                    (choice, llm.then_some(enc))
                }
            } else if dp
                && c.kind == ValueKind::Integer
                && spec.as_ref().and_then(|x| x.role).is_none()
                && looks_like_identifier(&c.name)
            {
                // A key-like integer is an identifier unless some value repeats often (released
                // spikes): decided from the released histogram, not an exact distinct count.
                let bins = spec.as_ref().and_then(|x| x.bins).unwrap_or(bins_default);
                let enc = self.numeric(c, s, spec.as_ref().and_then(|x| x.bounds), bins, sigma)?;
                let repeats = matches!(&enc, Encoding::Numeric(n) if !n.spikes.is_empty());
                if repeats {
                    let choice = profile::RoleChoice {
                        role: Role::Numeric,
                        reason: "integers; some values repeat often".into(),
                    };
                    (choice, Some(enc))
                } else {
                    let choice = profile::RoleChoice {
                        role: Role::Identifier,
                        reason: "the name reads like a key and no value repeats often".into(),
                    };
                    (choice, None)
                }
            } else {
                // Without DP the exact cardinality decides; under DP only declared roles and
                // types reach here, where the cardinality is not used.
                let cardinality = match (dp, s.distinct()) {
                    (true, _) => profile::Cardinality::Unused,
                    (false, Some(d)) => profile::Cardinality::Counted(d as f64),
                    (false, None) => profile::Cardinality::Overflow,
                };
                let choice = profile::infer_role(
                    c,
                    spec.as_ref(),
                    cardinality,
                    s.non_null() as f64,
                    self.settings.max_categories,
                );
                let encoding = match choice.role {
                    Role::Identifier => None,
                    Role::Text if self.settings.llm.is_none() => None,
                    Role::Categorical | Role::Text => Some(
                        self.categorical(
                            c,
                            s,
                            spec.as_ref(),
                            sigma,
                            self.threshold(sigma, delta_sel, selection_columns),
                            choice.role == Role::Text,
                        )?
                        .0,
                    ),
                    Role::Numeric | Role::Datetime => {
                        let bins = spec.as_ref().and_then(|x| x.bins).unwrap_or(bins_default);
                        Some(self.numeric(
                            c,
                            s,
                            spec.as_ref().and_then(|x| x.bounds),
                            bins,
                            sigma,
                        )?)
                    }
                };
                (choice, encoding)
            };
            if choice.role == Role::Text && self.settings.llm.is_none() {
                return Err(CoreError::Column {
                    table: self.table.clone(),
                    column: c.name.clone(),
                    message: format!(
                        "it looks like free text ({}); this chimera cannot model free text \
                         without an LLM: pass `--llm MODEL` to have one write it, declare \
                         `role: identifier` in the spec to regenerate it as fresh unique values, \
                         or `role: categorical` to keep its most frequent values",
                        choice.reason
                    ),
                });
            }
            let mut encoding = encoding;
            if from_release
                && choice.role != Role::Text
                && let Some(e) = &mut encoding
                && e.releases_nothing()
            {
                *e = e.null_only();
                let merged = format!("column `{}`: values too rare", c.name);
                self.notes.retain(|n| !n.starts_with(&merged));
                empty.push(format!("`{}`", c.name));
            }
            // A text column with no released value is the LLM's alone (its `other` code).
            if let Some(Encoding::Categorical(e)) = &encoding
                && e.values.is_empty()
                && !e.null
                && choice.role != Role::Text
            {
                let tau = self.threshold(sigma, delta_sel, selection_columns);
                return Err(CoreError::Column {
                    table: self.table.clone(),
                    column: c.name.clone(),
                    message: format!(
                        "no value is frequent enough to release under DP at this epsilon (a \
                         value needs about {tau:.0} rows); declare its domain in the spec or \
                         raise epsilon"
                    ),
                });
            }
            let format = if choice.role == Role::Identifier && c.kind == ValueKind::String {
                self.identifier_format(c, s, spec.as_ref())?
            } else {
                None
            };
            columns.push(ColumnModel {
                schema: c.clone(),
                role: choice.role,
                reason: choice.reason,
                encoding,
                format,
            });
        }
        if !empty.is_empty() {
            self.notes.push(format!(
                "table `{}`: no value of {} was released under DP (too few rows at this epsilon); sampled empty",
                self.table,
                empty.join(", ")
            ));
        }
        self.attributes = columns
            .iter()
            .enumerate()
            .filter(|(_, c)| c.encoding.is_some())
            .map(|(i, _)| i)
            .collect();
        self.columns = columns;
        Ok(&self.columns)
    }

    /// The format of a string identifier's fresh values: the spec's `pattern`, else (without
    /// DP) the one its values share. Under DP learning it would publish characters of real
    /// values, so an undeclared identifier keeps 16 hex digits, and a note says how to set one.
    fn identifier_format(
        &mut self,
        c: &ColumnSchema,
        s: &ColumnStats,
        spec: Option<&crate::spec::ColumnSpec>,
    ) -> Result<Option<IdFormat>> {
        if let Some(p) = spec.and_then(|x| x.pattern.as_ref()) {
            return IdFormat::parse(p).map(Some).map_err(|e| CoreError::Column {
                table: self.table.clone(),
                column: c.name.clone(),
                message: format!("pattern `{p}`: {e}"),
            });
        }
        if self.ledger.is_some() {
            self.notes.push(format!(
                "column `{}`: fresh identifiers are 16 hex digits (under DP their format is not \
                 learnt from the data; declare `pattern` in the spec, e.g. `P[0-9]{{5}}`)",
                c.name
            ));
            return Ok(None);
        }
        Ok(s.strings
            .as_ref()
            .and_then(|st| IdFormat::learn(st.counts.keys().map(String::as_str))))
    }

    fn categorical(
        &mut self,
        c: &ColumnSchema,
        s: &ColumnStats,
        spec: Option<&crate::spec::ColumnSpec>,
        sigma: f64,
        // Noisy count a value needs to be released (partition selection).
        tau: f64,
        text: bool,
    ) -> Result<(Encoding, f64, f64)> {
        let dp = self.ledger.is_some();
        let mut counts: Vec<(String, f64)> = match (&s.strings, &s.numbers) {
            (Some(st), _) => st
                .counts
                .iter()
                .map(|(k, v)| (k.clone(), *v as f64))
                .collect(),
            (None, Some(n)) => match &n.values {
                Some(m) => m
                    .iter()
                    .map(|(k, v)| (format_number(f64::from_bits(*k), c.kind), *v as f64))
                    .collect(),
                None => {
                    return Err(CoreError::Column {
                        table: self.table.clone(),
                        column: c.name.clone(),
                        message: format!(
                            "declared categorical but it has more than {} distinct values",
                            profile::MAX_TRACKED_NUMBERS
                        ),
                    });
                }
            },
            (None, None) => Vec::new(),
        };
        // In a fixed order: the noise each value draws must not follow a hash map's order
        // (which changes from process to process), or a noise seed would not repeat a fit.
        counts.sort_by(|a, b| a.0.cmp(&b.0));
        let nulls = if dp {
            s.nulls as f64 + privacy::gaussian(sigma, &mut self.noise)
        } else {
            s.nulls as f64
        };
        // A column empty by declaration keeps its null code whatever the data (public); a
        // required one has none (unless it is empty by declaration).
        let declared_empty = spec.is_some_and(|x| !x.empty_when.is_empty());
        let required = spec.is_some_and(|x| x.required);
        let null =
            declared_empty || !required && if dp { nulls > 3.0 * sigma } else { nulls > 0.0 };
        let mut kept_mass = 0.0;
        // Without DP, values beyond the category limit (with their counts).
        let mut tail: Vec<(String, f64)> = Vec::new();
        let public = spec.and_then(|x| x.domain.clone()).or_else(|| {
            (c.kind == ValueKind::Boolean).then(|| vec!["false".to_string(), "true".to_string()])
        });
        let (mut values, other) = if let Some(domain) = public {
            if let Some((v, _)) = counts.iter().find(|(v, _)| !domain.contains(v)) {
                return Err(CoreError::Column {
                    table: self.table.clone(),
                    column: c.name.clone(),
                    message: format!("value `{v}` is not in the domain the spec declares"),
                });
            }
            // Under DP, nulls too rare to release are imputed through `other`.
            (domain, dp && !null)
        } else if dp {
            let mut kept: Vec<String> = Vec::new();
            for (v, n) in &counts {
                let noisy = n + privacy::gaussian(sigma, &mut self.noise);
                if noisy >= tau {
                    kept.push(v.clone());
                    kept_mass += noisy;
                }
            }
            let dropped = counts.len().saturating_sub(kept.len());
            if dropped > 0 || kept.is_empty() {
                self.notes.push(format!(
                    "column `{}`: values too rare to release under DP are merged into one `other` code, decoded as a kept value",
                    c.name
                ));
            }
            // Under DP the other code always exists: whether rare values exist is private.
            (kept, true)
        } else {
            let mut sorted = counts.clone();
            sorted.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
            let mut limit = self.settings.max_categories;
            if text {
                // The long tail of a text column is the LLM's to write.
                limit = limit.min(sorted.iter().filter(|x| x.1 >= TEXT_MIN_COUNT).count());
            }
            let other = sorted.len() > limit || text;
            kept_mass = sorted.iter().take(limit).map(|x| x.1).sum();
            if sorted.len() > limit && !text {
                // The tail shares one code and is decoded with its own frequencies, so the
                // column's one-way distribution stays exact (a text column's tail is the LLM's).
                let rest: f64 = sorted[limit..].iter().map(|x| x.1).sum();
                self.notes.push(format!(
                    "column `{}`: {} rare values ({} rows) beyond the {limit} most frequent are modelled as one `other` code and decoded with their frequencies",
                    c.name,
                    sorted.len() - limit,
                    rest
                ));
                tail = sorted.split_off(limit);
            }
            (sorted.into_iter().take(limit).map(|x| x.0).collect(), other)
        };
        values.sort();
        let (merged, other_fallback): (Vec<String>, Vec<f64>) = if tail.is_empty() {
            (Vec::new(), Vec::new())
        } else {
            // `other` stands for the tail only: no weight on the kept values.
            let weights = std::iter::repeat_n(0.0, values.len()).chain(tail.iter().map(|x| x.1));
            let weights = weights.collect();
            (tail.into_iter().map(|x| x.0).collect(), weights)
        };
        if values.len() + other as usize + null as usize > u16::MAX as usize {
            return Err(CoreError::Column {
                table: self.table.clone(),
                column: c.name.clone(),
                message: "too many categories".into(),
            });
        }
        let encoding = Encoding::Categorical(CategoricalEncoding {
            values,
            other,
            null,
            merged,
            other_fallback,
        });
        Ok((encoding, kept_mass, nulls))
    }

    fn numeric(
        &mut self,
        c: &ColumnSchema,
        s: &ColumnStats,
        bounds: Option<[f64; 2]>,
        bins: usize,
        sigma: f64,
    ) -> Result<Encoding> {
        let dp = self.ledger.is_some();
        let n = s.numbers.as_ref().ok_or_else(|| CoreError::Column {
            table: self.table.clone(),
            column: c.name.clone(),
            message: "declared numeric but its values are not numbers".into(),
        })?;
        let len = n.hist.len();
        let in_bounds = |i: usize| match bounds {
            Some([lo, hi]) => {
                let (a, b) = grid::bounds(n.grid, i);
                b > lo && a <= hi
            }
            None => true,
        };
        let mut weights = vec![0.0; len];
        if dp {
            // Support: coarse buckets whose noisy count clears a threshold that pure noise crosses
            // with probability 1e-3 over the whole grid (skipped when the spec gives bounds).
            let coarse_len = grid::coarse_len(n.grid);
            let support: Vec<bool> = if bounds.is_some() {
                (0..coarse_len).map(|_| true).collect()
            } else {
                let z = privacy::normal_tail_inverse(1e-3 / coarse_len as f64);
                let mut coarse = vec![0.0; coarse_len];
                for (i, &x) in n.hist.iter().enumerate() {
                    coarse[grid::coarse_of(i)] += x as f64;
                }
                privacy::add_gaussian(&mut coarse, sigma, &mut self.noise);
                coarse.iter().map(|&x| x > z * sigma).collect()
            };
            // Reals only: their log grid reaches down to 1e-9, while an integer's buckets are
            // never finer than 1 and a date's than a day.
            if let (Some([lo, hi]), grid::GridKind::Real) = (bounds, n.grid) {
                self.release_units(n, [lo, hi], c.kind, sigma, &mut weights);
            } else {
                for i in 0..len {
                    if support[grid::coarse_of(i)] && in_bounds(i) {
                        weights[i] =
                            (n.hist[i] as f64 + privacy::gaussian(sigma, &mut self.noise)).max(0.0);
                    }
                }
                // Noise spread evenly over a wide support would invent values: drop fine buckets
                // that are indistinguishable from zero.
                for w in weights.iter_mut() {
                    if *w < FINE_THRESHOLD * sigma {
                        *w = 0.0;
                    }
                }
            }
            // Nothing stands above the noise (a small table, a tight budget), but the spec gives
            // public bounds: the column is uniform within them, which uses no data.
            if let Some([lo, hi]) = bounds
                && weights.iter().all(|&w| w == 0.0)
            {
                for (i, w) in weights.iter_mut().enumerate() {
                    *w = width_inside(n.grid, i, [lo, hi], c.kind);
                }
                self.notes.push(format!(
                    "column `{}`: no value range stands above the DP noise at this epsilon; it is \
                     drawn uniformly within its declared bounds [{lo}, {hi}] (its parents still \
                     shape it)",
                    c.name
                ));
            }
        } else {
            for (i, (w, &h)) in weights.iter_mut().zip(&n.hist).enumerate() {
                if in_bounds(i) {
                    *w = h as f64;
                }
            }
        }
        let declared = self.spec.columns.get(&c.name);
        let declared_empty = declared.is_some_and(|x| !x.empty_when.is_empty());
        let required = declared.is_some_and(|x| x.required);
        let null = if dp {
            s.nulls as f64 + privacy::gaussian(sigma, &mut self.noise) > 3.0 * sigma
        } else {
            s.nulls > 0
        } && !required
            || declared_empty;
        let integer = matches!(c.kind, ValueKind::Integer | ValueKind::Date);
        let enc = domain::numeric_from_weights(
            n.grid,
            integer,
            &weights,
            if dp { None } else { n.values.as_ref() },
            null,
            bounds,
            NumericShape {
                bins,
                // A column the spec gives few bins is binned even when it has few values (e.g.
                // child counts: twenty exact counts would make every table they enter too big).
                discrete_limit: match self.spec.column(&c.name).and_then(|x| x.bins) {
                    Some(b) => b.min(DISCRETE_LIMIT),
                    None => DISCRETE_LIMIT,
                },
                spikes_use_bins: dp,
                exact: self.exact_values(&c.name, bounds),
                cuts: (self.settings.within.iter())
                    .filter(|w| w.column == c.name)
                    .flat_map(|w| w.cuts.iter().copied())
                    .collect(),
            },
        );
        if enc.spikes.is_empty() && enc.bins.is_empty() && !self.shaped_by_release(&c.name) {
            return Err(CoreError::Column {
                table: self.table.clone(),
                column: c.name.clone(),
                message: "no value range is frequent enough to release under DP at this \
                          epsilon; declare public bounds in the spec or raise epsilon"
                    .into(),
            });
        }
        if enc.spikes.len() + enc.bins.len() + 1 > u16::MAX as usize {
            return Err(CoreError::Column {
                table: self.table.clone(),
                column: c.name.clone(),
                message: "too many distinct values to model as discrete".into(),
            });
        }
        Ok(Encoding::Numeric(enc))
    }

    /// Column index of each network attribute.
    pub fn attributes(&self) -> &[usize] {
        &self.attributes
    }

    pub fn columns(&self) -> &[ColumnModel] {
        &self.columns
    }

    /// Attribute index of each given column in the network, in the order given.
    pub fn given_attributes(&self) -> Vec<usize> {
        self.settings
            .given
            .iter()
            .filter_map(|name| {
                self.attributes
                    .iter()
                    .position(|&c| self.columns[c].schema.name == *name)
            })
            .collect()
    }

    /// The network attribute of a column, by name.
    fn attribute(&self, name: &str) -> Option<usize> {
        self.attributes
            .iter()
            .position(|&c| self.columns[c].schema.name == name)
    }

    /// Declared parents: the spec's `parents` and `empty_when` conditions, a relational fit's
    /// `parents`, a `last_only` column's position column, and a declared `set_where` count or
    /// position. Columns the network does not hold are passed over. Under DP a last-child
    /// position is outside the cell cap: its nine codes alone would leave a transfer's type no
    /// room for the previous one's, and draw admissions without an `admit` or with several.
    fn forced_parents(&self) -> Vec<Forced> {
        let pair = |c: &str, p: &str| Some(Forced::new(self.attribute(c)?, self.attribute(p)?));
        // A declared leaf (a two-code presence column) is outside the cap: it doubles a
        // table at most, and would otherwise crowd out the learnt parents.
        let declared = self.spec.columns.iter().flat_map(|(name, c)| {
            c.parents.iter().filter_map(|p| {
                Some(Forced {
                    outside_cap: self.settings.leaves.contains(p),
                    ..pair(name, p)?
                })
            })
        });
        let settled = (self.settings.parents.iter().map(|(c, p)| (c, p)))
            .chain(self.settings.within.iter().map(|w| (&w.column, &w.by)))
            .filter_map(|(c, p)| pair(c, p));
        // In this order: the back-off ranks a column's declared parents so (the position of a
        // last-child value needs none, its zeros are set after the estimate).
        let dp = self.ledger.is_some();
        let last = self.settings.last_only.iter().filter_map(|l| {
            Some(Forced {
                outside_cap: dp,
                ..pair(&l.column, &l.position)?
            })
        });
        let empty = self
            .spec
            .columns
            .iter()
            .flat_map(|(name, c)| c.empty_when.keys().filter_map(|p| pair(name, p)));
        let set = self
            .set_rules()
            .into_iter()
            .filter(|&(_, _, declare, _)| declare)
            .map(|(a, q, ..)| Forced::new(a, q));
        declared
            .chain(empty)
            .chain(settled)
            .chain(last)
            .chain(set)
            .collect()
    }

    /// The spec's `empty_when` rules on the network's attributes. A column the network does not
    /// hold has none; a condition it does not hold, or a value without a code of its own, is
    /// an error.
    fn empty_rules(&self) -> Result<Vec<EmptyRule>> {
        let cards = self.cards();
        let mut rules = Vec::new();
        for (name, c) in &self.spec.columns {
            let Some(a) = self.attribute(name) else {
                continue;
            };
            let card = cards[a];
            for (q_name, value) in &c.empty_when {
                let err = |message: String| CoreError::Column {
                    table: self.table.clone(),
                    column: name.clone(),
                    message,
                };
                let q = self.attribute(q_name).ok_or_else(|| {
                    err(format!(
                        "`empty_when: {{{q_name}: {value}}}`: `{q_name}` is not modelled (an \
                         identifier or a text column cannot be a condition)"
                    ))
                })?;
                let code = self.code_of(q, value).ok_or_else(|| {
                    err(format!(
                        "`empty_when: {{{q_name}: {value}}}`: `{value}` is not a value of \
                         `{q_name}` with a code of its own (declare it in `{q_name}`'s `domain`)"
                    ))
                })?;
                rules.push(EmptyRule {
                    column: a,
                    condition: q,
                    code,
                    null: card - 1,
                    required: c.required,
                    says: format!("`empty_when: {{{q_name}: {value}}}`"),
                    name: name.clone(),
                    held: format!("`{q_name}` = `{value}`"),
                });
            }
        }
        Ok(rules)
    }

    /// Stops when the data breaks an `empty_when` rule: `joint` holds the exact counts of each
    /// edge's child and parents (the child fastest).
    fn check_empty_when(
        &self,
        rules: &[EmptyRule],
        structure: &[Edge],
        joint: &[Vec<f64>],
    ) -> Result<()> {
        let cards = self.cards();
        for r in rules {
            let Some((e, counts)) = structure
                .iter()
                .zip(joint)
                .find(|(e, _)| e.child == r.column)
            else {
                continue;
            };
            let Some(k) = e.parents.iter().position(|&p| p == r.condition) else {
                continue;
            };
            let stride: usize = e.parents[..k].iter().map(|&p| cards[p]).product();
            let pc = cards[r.condition];
            let (mut broken, mut empty) = (0.0, 0.0);
            for (c, row) in counts.chunks(cards[r.column]).enumerate() {
                if (c / stride) % pc == r.code {
                    broken += row.iter().sum::<f64>() - row[r.null];
                } else if r.required {
                    empty += row[r.null];
                }
            }
            let err = |message: String| CoreError::Column {
                table: self.table.clone(),
                column: r.name.clone(),
                message,
            };
            if broken > 0.0 {
                return Err(err(format!(
                    "{} does not hold in the data: {broken} rows with {} have a value",
                    r.says, r.held
                )));
            }
            if empty > 0.0 {
                return Err(err(format!(
                    "`required` does not hold in the data: {empty} rows are empty where {} \
                     does not apply",
                    r.says
                )));
            }
        }
        Ok(())
    }

    /// Gives the rows of each `empty_when` condition no other outcome than empty, and, for a
    /// `required` column, the other rows no weight on empty (post-processing: under DP it adds
    /// no cost).
    fn enforce_empty_when(rules: &[EmptyRule], net: &mut BayesNet) {
        for r in rules {
            edit_rows(net, r.column, r.condition, |parent, row| {
                if parent == r.code {
                    only(row, r.null);
                } else if r.required && row.len() > 1 {
                    rule_out(row, r.null);
                }
            });
        }
    }

    /// Gives each `last_only` value no weight where its position column says a later sibling
    /// follows (`only_last`), and all of it where it says the row is the last (`always`).
    /// Codes of the position column that mix last and not-last values are left alone.
    /// A value that every last child must hold needs a code of its own: without one the rule
    /// could not hold, and the fit stops. (A value only the last may hold and that has no code
    /// is never drawn at all.)
    fn enforce_last_only(&self, net: &mut BayesNet) -> Result<(), CoreError> {
        for l in &self.settings.last_only {
            let (Some(a), Some(q)) = (self.attribute(&l.column), self.attribute(&l.position))
            else {
                continue;
            };
            let Some(term) = self.code_of(a, &l.value) else {
                if l.always {
                    let (name, value) = (&l.column, &l.value);
                    return Err(CoreError::Column {
                        table: self.table.clone(),
                        column: name.clone(),
                        message: format!(
                            "`last_is`: `{value}` is not a value of `{name}` with a code of its \
                             own (declare it in the column's `domain`)"
                        ),
                    });
                }
                continue;
            };
            let Some(Encoding::Numeric(pos)) = &self.columns[self.attributes[q]].encoding else {
                continue;
            };
            let mut not_last: Vec<bool> = pos.spikes.iter().map(|&s| s != l.last).collect();
            not_last.extend(pos.bins.iter().map(|b| l.last < b.lo || l.last >= b.hi));
            // Positions are whole numbers: a bin holds only the last when the one whole
            // number in it is the last.
            let mut last: Vec<bool> = pos.spikes.iter().map(|&s| s == l.last).collect();
            last.extend(
                pos.bins
                    .iter()
                    .map(|b| b.lo.ceil() == l.last && b.hi.ceil() - 1.0 == l.last),
            );
            edit_rows(net, a, q, |position, row| {
                if l.only_last && not_last.get(position).copied().unwrap_or(false) {
                    rule_out(row, term);
                } else if l.always && last.get(position).copied().unwrap_or(false) {
                    only(row, term);
                }
            });
        }
        Ok(())
    }

    /// The code of `value` in attribute `a`: a category, or a number with a spike of its own.
    fn code_of(&self, a: usize, value: &str) -> Option<usize> {
        match &self.columns[self.attributes[a]].encoding {
            Some(Encoding::Categorical(c)) => c.values.iter().position(|v| v == value),
            Some(Encoding::Numeric(n)) => value
                .trim()
                .parse::<f64>()
                .ok()
                .and_then(|x| n.spikes.iter().position(|&s| s == x)),
            None => None,
        }
    }

    /// The `set_where` rules whose column has a null code, as (column, by) attributes, whether
    /// `by` is declared, and the side of the rule each code of `by` is on (`Some(true)`: set;
    /// `None`: values on both sides, or null).
    fn set_rules(&self) -> Vec<(usize, usize, bool, Vec<Option<bool>>)> {
        self.settings
            .set_where
            .iter()
            .filter_map(|s| {
                let (a, q) = (self.attribute(&s.column)?, self.attribute(&s.by)?);
                let has_null = match self.columns[self.attributes[a]].encoding.as_ref()? {
                    Encoding::Categorical(c) => c.null,
                    Encoding::Numeric(n) => n.null,
                };
                let enc = self.columns[self.attributes[q]].encoding.as_ref()?;
                let Encoding::Numeric(by) = enc else {
                    return None;
                };
                if !by.integer {
                    return None;
                }
                // The side of each code, from the counts that encode to it (a value beyond
                // the bins takes the outer bin; under DP one without a code takes the nearest).
                let top = by
                    .bounds
                    .map(|[_, hi]| hi)
                    .or_else(|| by.bins.last().map(|b| b.hi))
                    .into_iter()
                    .chain(by.spikes.last().copied())
                    .fold(0.0, f64::max)
                    .min(SET_WHERE_PROBES as f64) as u32;
                let encoder = domain::Encoder::new(enc);
                let mut sides: Vec<Option<bool>> = vec![None; enc.cardinality()];
                let mut seen = vec![false; sides.len()];
                for x in 0..=top + 1 {
                    let x = x as f64;
                    let Some(c) = encoder.encode_number(Some(x)).map(usize::from) else {
                        continue;
                    };
                    let here = s.set.contains(&x);
                    sides[c] = if seen[c] && sides[c] != Some(here) {
                        None
                    } else {
                        Some(here)
                    };
                    seen[c] = true;
                }
                has_null.then_some((a, q, s.declare, sides))
            })
            .collect()
    }

    /// Holds each `set_where` column to its rule: no null where it is set, only null elsewhere.
    fn enforce_set_where(&self, net: &mut BayesNet) {
        for (a, q, _, sides) in self.set_rules() {
            edit_rows(net, a, q, |code, row| {
                let null = row.len() - 1;
                match sides.get(code).copied().flatten() {
                    Some(true) if row.len() > 1 => rule_out(row, null),
                    Some(false) => only(row, null),
                    _ => {}
                }
            });
        }
    }

    /// Holds each banded number to its band: wherever the band column is band `i`, the number's
    /// codes that lie outside the band get no weight (a bin that straddles a cut, on a grid
    /// coarser than the cuts, counts as inside both bands).
    fn enforce_within(&self, net: &mut BayesNet) {
        for w in &self.settings.within {
            let (Some(a), Some(q)) = (self.attribute(&w.column), self.attribute(&w.by)) else {
                continue;
            };
            let enc = |a: usize| match self.columns[self.attributes[a]].encoding.as_ref() {
                Some(Encoding::Numeric(n)) => Some(n),
                _ => None,
            };
            let (Some(number), Some(band)) = (enc(a), enc(q)) else {
                continue;
            };
            // The band of each code of `by`, and the range of each code of the number.
            let bands: Vec<Option<usize>> = (band.spikes.iter())
                .map(|&v| Some(v.round().max(0.0) as usize))
                .chain(band.bins.iter().map(|_| None))
                .collect();
            let ranges: Vec<(f64, f64)> = (number.spikes.iter())
                .map(|&v| (v, v))
                .chain(number.bins.iter().map(|b| (b.lo, b.hi)))
                .collect();
            let inside = |(lo, hi): (f64, f64), i: usize| {
                let from = if i == 0 {
                    f64::NEG_INFINITY
                } else {
                    w.cuts[i - 1]
                };
                let to = w.cuts.get(i).copied().unwrap_or(f64::INFINITY);
                if lo == hi {
                    from <= lo && lo < to
                } else {
                    lo < to && hi > from
                }
            };
            edit_rows(net, a, q, |code, row| {
                let Some(Some(i)) = bands.get(code).copied() else {
                    return;
                };
                // Per code: inside the band, outside, or the null code (left alone).
                let side: Vec<Option<bool>> = (0..row.len())
                    .map(|k| ranges.get(k).map(|&r| inside(r, i.min(w.cuts.len()))))
                    .collect();
                let kept: f32 = (side.iter().zip(row.iter()))
                    .filter(|(s, _)| **s == Some(true))
                    .map(|(_, p)| p)
                    .sum();
                let room = side.iter().filter(|s| **s == Some(true)).count();
                if room == 0 {
                    // No code of the number lies in the band (cannot happen with the data's
                    // own cuts): the row is left as it is rather than emptied.
                    return;
                }
                for (s, p) in side.iter().zip(row.iter_mut()) {
                    match s {
                        Some(false) => *p = 0.0,
                        // A band whose codes had no weight here: evenly over them.
                        Some(true) if kept <= 0.0 => *p = 1.0 / room as f32,
                        _ => {}
                    }
                }
                let sum: f32 = row.iter().sum();
                if sum > 0.0 {
                    row.iter_mut().for_each(|p| *p /= sum);
                }
            });
        }
    }

    /// Under DP with public bounds, the noisy fine-grid weights of a real-valued column, measured
    /// in release units: consecutive fine buckets are gathered into one unit until it is at
    /// least 1/[`RELEASE_UNITS`] of the bounds' range wide (an exact bucket, such as zero, is
    /// always a unit of its own). A unit's noisy count, kept when it clears the threshold, is
    /// spread over its buckets by width. On the log grid the buckets near zero are far finer
    /// than any resolution the bounds ask for: measured one by one, their noise put most of a
    /// small table's mass on values of a second or less (in most draws 40–61% of the demo's DP
    /// stays lasted under an hour; none of the real ones do).
    fn release_units(
        &mut self,
        n: &profile::NumberCounts,
        bounds: [f64; 2],
        kind: ValueKind,
        sigma: f64,
        weights: &mut [f64],
    ) {
        let min_width = (bounds[1] - bounds[0]) / RELEASE_UNITS;
        let width = |i: usize| width_inside(n.grid, i, bounds, kind);
        let exact = |i: usize| grid::exact_value(n.grid, i).is_some();
        let len = n.hist.len();
        let mut i = 0;
        while i < len {
            if !in_range(n.grid, i, bounds) {
                i += 1;
                continue;
            }
            let mut j = i + 1;
            let mut w = width(i);
            if !exact(i) {
                while j < len && w < min_width && !exact(j) && in_range(n.grid, j, bounds) {
                    w += width(j);
                    j += 1;
                }
            }
            let count: f64 = n.hist[i..j].iter().map(|&x| x as f64).sum();
            let noisy = count + privacy::gaussian(sigma, &mut self.noise);
            if noisy >= FINE_THRESHOLD * sigma {
                for (k, weight) in weights.iter_mut().enumerate().take(j).skip(i) {
                    *weight = if w > 0.0 {
                        noisy * width(k) / w
                    } else {
                        noisy / (j - i) as f64
                    };
                }
            }
            i = j;
        }
    }

    /// Values of a numeric column that get codes of their own whatever the data (so free under
    /// DP): a last-child position with its neighbours, the counts on either side of a
    /// `set_where` range's ends, and a last-child or `empty_when` value,
    /// with its neighbours inside the declared bounds. A value without its own code is encoded
    /// as the nearest one, which must never be the last child's position or value when it is not;
    /// and the value's column keeps a code for another value even when the noise released
    /// none (a 0/1 flag with `bounds: [0, 1]`).
    fn exact_values(&self, column: &str, bounds: Option<[f64; 2]>) -> Vec<f64> {
        let near = |x: f64| [x - 1.0, x, x + 1.0];
        let inside = |x: &f64| bounds.is_none_or(|[lo, hi]| (lo..=hi).contains(x));
        let mut exact: Vec<f64> = Vec::new();
        for l in &self.settings.last_only {
            if l.position == column {
                exact.extend(near(l.last).into_iter().filter(|&x| x >= 0.0));
            }
            if l.column == column
                && let Ok(v) = l.value.trim().parse::<f64>()
            {
                match bounds {
                    Some(_) => exact.extend(near(v)),
                    None => exact.push(v),
                }
            }
        }
        // A `set_where` count or position: the values on either side of each end of the range.
        for w in self.settings.set_where.iter().filter(|w| w.by == column) {
            let ends = [w.set.start - 1.0, w.set.start, w.set.end - 1.0, w.set.end];
            exact.extend(ends.into_iter().filter(|x| x.is_finite() && *x >= 0.0));
        }
        // An `empty_when` condition's value (the same way: its neighbours must not encode as it).
        let conditions = self
            .spec
            .columns
            .values()
            .filter_map(|c| c.empty_when.get(column));
        for v in conditions.filter_map(|v| v.trim().parse::<f64>().ok()) {
            match bounds {
                Some(_) => exact.extend(near(v)),
                None => exact.push(v),
            }
        }
        exact.retain(inside);
        exact
    }

    /// `other` never decodes to a `last_only` value: the tables hold that value to the last
    /// child only through its own code. Its share of `other` goes to the other values (evenly
    /// when they have none).
    fn keep_other_off_last(&mut self) {
        for l in &self.settings.last_only {
            let Some(col) = self.columns.iter().position(|c| c.schema.name == l.column) else {
                continue;
            };
            let Some(Encoding::Categorical(c)) = &mut self.columns[col].encoding else {
                continue;
            };
            let Some(i) = c.values.iter().position(|v| *v == l.value) else {
                continue;
            };
            let n = c.values.len() + c.merged.len();
            if !c.other || n < 2 {
                continue;
            }
            let mut w = if c.other_fallback.len() == n {
                c.other_fallback.clone()
            } else {
                vec![1.0; n]
            };
            w[i] = 0.0;
            if w.iter().all(|&x| x <= 0.0) {
                w = vec![1.0; n];
                w[i] = 0.0;
            }
            c.other_fallback = w;
        }
    }

    /// Cardinality of each network attribute.
    pub fn cards(&self) -> Vec<usize> {
        self.attributes
            .iter()
            .map(|&i| {
                self.columns[i]
                    .encoding
                    .as_ref()
                    .map_or(1, |e| e.cardinality())
            })
            .collect()
    }

    /// Measures the one-way marginals (exact counts in, noisy under DP) and the row count;
    /// then chooses the network structure on `sample` (encoded rows of the table).
    pub fn structure(&mut self, one_way: &[Vec<f64>], sample: &CodedTable) -> Result<Vec<Edge>> {
        let d = self.attributes.len();
        let dp = self.ledger.is_some();
        let domains_used = self.rho_domains > 0.0;
        let exact_rows = one_way.first().map_or(0.0, |v| v.iter().sum::<f64>());
        let mut one_way = one_way.to_vec();
        if dp && d > 0 {
            let rho1 = self.rho(1, domains_used);
            self.sigma_one_way = privacy::gaussian_sigma(self.calibrated(rho1), (d as f64).sqrt());
            for v in &mut one_way {
                privacy::add_gaussian(v, self.sigma_one_way, &mut self.noise);
            }
            if let Some(l) = &mut self.ledger {
                l.charge("one-way marginals", rho1)?;
            }
            let rho_joint = self.rho(3, domains_used);
            self.sigma_joint =
                privacy::gaussian_sigma(self.calibrated(rho_joint), (d as f64).sqrt());
            // Noisy total: the mean over attributes of the noisy marginal sums.
            self.rows =
                (one_way.iter().map(|v| v.iter().sum::<f64>()).sum::<f64>() / d as f64).max(1.0);
            self.merge_rare(&mut one_way);
        } else {
            self.rows = exact_rows;
        }
        self.one_way = one_way;
        let given = self.given_attributes();
        let k = max_parents(&self.settings, &self.spec);
        let max_cells = if dp {
            (self.rows / (USEFULNESS * self.sigma_joint)).max(4.0)
        } else {
            (self.rows / ROWS_PER_CELL).max(4.0)
        };
        self.max_cells = max_cells;
        let search = self.recode(sample.thin(self.settings.search_rows));
        self.rows_in_search = search.rows();
        let settings = SearchSettings {
            max_parents: k,
            max_cells,
            beam: 6,
            score: if dp {
                // The search scores a thinned sample, the noise falls on counts of every row:
                // the noise penalty is put in the sample's units (from the released total and
                // the setting, never the exact count). Unscaled, a table of a million rows
                // weighed 20 times too much noise against each edge and learnt none.
                Score::Deviation {
                    sigma: self.sigma_joint
                        * (self.settings.search_rows as f64 / self.rows).min(1.0),
                }
            } else {
                Score::InformationAboveChance
            },
        };
        let forced = self.forced_parents();
        let leaves: Vec<usize> = (self.settings.leaves.iter())
            .filter_map(|c| self.attribute(c))
            .collect();
        let mut structure = if dp {
            let rho_s = self.rho(2, domains_used);
            let choices = d.saturating_sub(given.len()).max(1);
            let eps = privacy::em_epsilon(self.calibrated(rho_s) / choices as f64);
            if let Some(l) = &mut self.ledger {
                l.charge("network structure (exponential mechanism)", rho_s)?;
            }
            bayesnet::learn_structure_with(
                &search,
                settings,
                Selection::Private {
                    epsilon: eps,
                    rng: &mut self.noise,
                },
                &given,
                &forced,
                &leaves,
            )
        } else {
            bayesnet::learn_structure_with::<ChaCha20Rng>(
                &search,
                settings,
                Selection::Exact,
                &given,
                &forced,
                &leaves,
            )
        };
        // Order parents for the back-off: most informative first. Under DP this uses only
        // released structure (position in the order), never the data.
        let pos: HashMap<usize, usize> = structure
            .iter()
            .enumerate()
            .map(|(i, e)| (e.child, i))
            .collect();
        let set_rules = self.set_rules();
        for e in &mut structure {
            if dp {
                e.parents.sort_by_key(|p| std::cmp::Reverse(pos[p]));
            } else {
                let child = e.child;
                let mut scored: Vec<(usize, f64)> = e
                    .parents
                    .iter()
                    .map(|&p| {
                        let mi = bayesnet::mutual_information(
                            &bayesnet::contingency(&search, &[child, p]),
                            search.cards[child],
                        );
                        (p, mi)
                    })
                    .collect();
                scored.sort_by(|a, b| b.1.total_cmp(&a.1));
                e.parents = scored.into_iter().map(|x| x.0).collect();
            }
            // Declared parents come first, in the order declared: the back-off drops the last
            // parents first, so a sparse cell falls back on what the spec says matters most
            // (a discharge given the death flag, before the admission type).
            // A last-child value's position comes last, after the learnt parents: its zeros are
            // set after the estimate, and leading the back-off it would let a sparse cell fall
            // back on the position alone (a transfer after an ED stay drawn from what the
            // transfers at that position hold, not from what follows an ED stay).
            // So does a `set_where` column's count or position (also post-processing).
            let positions: Vec<usize> = self
                .settings
                .last_only
                .iter()
                .filter(|l| self.attribute(&l.column) == Some(e.child))
                .filter_map(|l| self.attribute(&l.position))
                .chain(
                    set_rules
                        .iter()
                        .filter(|(a, ..)| *a == e.child)
                        .map(|(_, q, ..)| *q),
                )
                .collect();
            // A declared leaf (a presence column outside the cell cap) comes after them all: a
            // cell it makes sparse falls back on what the table says without it (a registered
            // admission with two transfers: their types as two transfers have them, an `admit`
            // and the discharge, not an emergency stay and the discharge, which no real
            // admission has).
            let declared: Vec<usize> = forced
                .iter()
                .filter(|f| f.child == e.child && !positions.contains(&f.parent))
                .map(|f| f.parent)
                .collect();
            let rank = |p: &usize| match declared.iter().position(|d| d == p) {
                Some(i) if leaves.contains(p) => (3, i),
                Some(i) => (0, i),
                None if positions.contains(p) => (2, 0),
                None => (1, 0),
            };
            e.parents.sort_by_key(rank);
        }
        Ok(structure)
    }

    /// Under DP, merges released categories too rare to model into `other` (post-processing of
    /// the noisy one-way counts, which are re-summed to the new codes).
    fn merge_rare(&mut self, one_way: &mut [Vec<f64>]) {
        let threshold = MERGE_BELOW * self.sigma_joint;
        self.code_maps = vec![None; self.attributes.len()];
        for (a, &col) in self.attributes.iter().enumerate() {
            let name = self.columns[col].schema.name.clone();
            let Some(Encoding::Categorical(c)) = &mut self.columns[col].encoding else {
                continue;
            };
            let counts = &one_way[a];
            let n = c.values.len();
            let mut keep: Vec<bool> = counts[..n].iter().map(|&x| x >= threshold).collect();
            // A declared last-child value keeps its own code (the spec's choice, not the
            // data's), so its conditional tables can hold it to the last child.
            let declared = (self
                .settings
                .last_only
                .iter()
                .map(|l| (&l.column, &l.value)))
            .chain(self.settings.kept.iter().map(|(c, v)| (c, v)));
            for (_, value) in declared.filter(|(c, _)| **c == name) {
                if let Some(i) = c.values.iter().position(|v| v == value) {
                    keep[i] = true;
                }
            }
            if !keep.contains(&true) {
                // Keep the most frequent value so the column still has a value of its own.
                if let Some(best) = (0..n).max_by(|&i, &j| counts[i].total_cmp(&counts[j])) {
                    keep[best] = true;
                }
            }
            let merged = keep.iter().filter(|k| !**k).count();
            // Merging a single value into a new `other` code would not shrink the tables.
            if merged == 0 || (merged == 1 && !c.other) {
                continue;
            }
            let kept_total: f64 = (0..n)
                .filter(|&i| keep[i])
                .map(|i| counts[i].max(0.0))
                .sum();
            let unreleased = if c.other { counts[n].max(0.0) } else { 0.0 };
            let scale = if kept_total > 0.0 {
                unreleased / kept_total
            } else {
                0.0
            };
            let mut fallback: Vec<f64> = (0..n)
                .filter(|&i| keep[i])
                .map(|i| counts[i].max(0.0) * scale)
                .collect();
            fallback.extend((0..n).filter(|&i| !keep[i]).map(|i| counts[i].max(0.0)));
            let map = c.merge(&keep);
            c.other_fallback = fallback;
            let mut merged_counts = vec![0.0; c.values.len() + c.other as usize + c.null as usize];
            for (old, &new) in map.iter().enumerate() {
                merged_counts[new as usize] += counts[old];
            }
            one_way[a] = merged_counts;
            self.notes.push(format!(
                "column `{}`: {merged} values with noisy counts below {threshold:.0} are modelled as one `other` code and decoded with their released frequencies",
                self.columns[col].schema.name
            ));
            self.code_maps[a] = Some(map);
        }
    }

    /// Re-codes an encoded table after rare categories were merged (identity otherwise).
    pub fn recode(&self, mut table: CodedTable) -> CodedTable {
        for (a, map) in self.code_maps.iter().enumerate() {
            if let Some(map) = map {
                table.cards[a] = map.iter().map(|&c| c as usize + 1).max().unwrap_or(1);
                for code in &mut table.columns[a] {
                    *code = map[*code as usize];
                }
            }
        }
        table
    }

    /// Turns the exact (child, parents) counts of each edge into the model, noising them under DP.
    pub fn finish(mut self, structure: &[Edge], joint: &[Vec<f64>]) -> Result<Model> {
        let dp = self.ledger.is_some();
        let empty_rules = self.empty_rules()?;
        self.check_empty_when(&empty_rules, structure, joint)?;
        let mut joint = joint.to_vec();
        let mut sigmas = vec![0.0; joint.len()];
        if dp {
            let rho = self.rho(3, self.rho_domains > 0.0);
            sigmas = joint_sigmas(&joint, self.calibrated(rho));
            for (v, &sigma) in joint.iter_mut().zip(&sigmas) {
                privacy::add_gaussian(v, sigma, &mut self.noise);
            }
            if let Some(l) = &mut self.ledger {
                l.charge("conditional tables (Gaussian mechanism)", rho)?;
            }
        }
        let cards = self.cards();
        let mut net = bayesnet::estimate(
            structure,
            &cards,
            &joint,
            &self.one_way,
            CountNoise {
                joint: sigmas,
                one_way: self.sigma_one_way,
                smoothing: if dp { SMOOTHING_DP } else { SMOOTHING_EXACT },
            },
        );
        self.enforce_last_only(&mut net)?;
        Self::enforce_empty_when(&empty_rules, &mut net);
        self.enforce_set_where(&mut net);
        self.enforce_within(&mut net);
        // `other` decodes to a kept value drawn from the released one-way distribution.
        for (a, &col) in self.attributes.iter().enumerate() {
            if let Some(Encoding::Categorical(c)) = &mut self.columns[col].encoding
                && c.other
                && c.other_fallback.is_empty()
            {
                c.other_fallback = self.one_way[a][..c.values.len()]
                    .iter()
                    .map(|x| x.max(0.0))
                    .collect();
            }
        }
        self.keep_other_off_last();
        let mut notes = self.notes;
        if let Some(fill) = &self.settings.llm
            && fill.exemplars == crate::model::Exemplars::KnnReal
        {
            notes.push(
                "knn-real exemplars: real rows are pasted into the LLM's prompts, so the text \
                 columns carry NO differential-privacy guarantee"
                    .into(),
            );
        }
        if let Some(l) = &self.ledger {
            notes.push(format!(
                "({:.3}, {:.1e})-DP: zCDP rho {:.5} spent of {:.5}; delta split {:.1e} conversion + {:.1e} category release",
                l.epsilon_spent().max(0.0),
                l.delta,
                l.spent(),
                l.rho_total,
                l.delta_conversion,
                l.delta_selection
            ));
        }
        let model = Model {
            format: MODEL_FORMAT.into(),
            chimera_version: env!("CARGO_PKG_VERSION").into(),
            table: self.table,
            rows: self.rows,
            columns: self.columns,
            attributes: self.attributes,
            network: net,
            privacy: ModelPrivacy {
                mode: self.settings.privacy,
                ledger: self.ledger,
                noise_seeded: self.settings.noise_seed.is_some(),
                notes,
            },
            settings: FitSettingsRecord {
                max_parents: max_parents(&self.settings, &self.spec),
                bins: default_bins(&self.settings, &self.spec),
                max_categories: self.settings.max_categories,
                max_cells: self.max_cells,
                search_rows: self.settings.search_rows,
                rows_in_search: self.rows_in_search,
            },
            llm: self.settings.llm.clone(),
        };
        model.check()?;
        Ok(model)
    }
}

/// σ per table so that the total error Σ cells·σ is smallest for the budget ρ (Σ 1/(2σ²) = ρ):
/// σ_i ∝ cells_i^(-1/3), larger tables get less noise per cell.
fn joint_sigmas(tables: &[Vec<f64>], rho: f64) -> Vec<f64> {
    let e = 1.0 / 3.0;
    let weights: Vec<f64> = tables
        .iter()
        .map(|t| (t.len().max(1) as f64).powf(2.0 * e))
        .collect();
    let k = (weights.iter().sum::<f64>() / (2.0 * rho)).sqrt();
    tables
        .iter()
        .map(|t| k * (t.len().max(1) as f64).powf(-e))
        .collect()
}

/// How a number that is used as a category label is written.
/// Under DP with public bounds, a numeric column's fine buckets are measured in units at least
/// this fine a share of the bounds' range (see [`Fitter::release_units`]).
const RELEASE_UNITS: f64 = 5000.0;

/// How much of fine bucket `i` lies inside `bounds` (an integer's bound includes the whole
/// integer).
fn width_inside(g: grid::GridKind, i: usize, [lo, hi]: [f64; 2], kind: ValueKind) -> f64 {
    let top = hi
        + if matches!(kind, ValueKind::Integer | ValueKind::Date) {
            1.0
        } else {
            0.0
        };
    let (a, b) = grid::bounds(g, i);
    (b.min(top) - a.max(lo)).max(0.0)
}

/// Whether fine bucket `i` reaches inside `bounds`.
fn in_range(g: grid::GridKind, i: usize, [lo, hi]: [f64; 2]) -> bool {
    let (a, b) = grid::bounds(g, i);
    b > lo && a <= hi
}

fn format_number(x: f64, kind: ValueKind) -> String {
    match kind {
        ValueKind::Integer | ValueKind::Date => format!("{}", x as i64),
        _ => domain::number_label(x),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn joint_sigmas_spend_exactly_the_budget_and_favour_large_tables() {
        let tables = vec![vec![0.0; 4], vec![0.0; 40], vec![0.0; 400]];
        let rho = 0.01;
        let s = joint_sigmas(&tables, rho);
        let spent: f64 = s.iter().map(|x| 1.0 / (2.0 * x * x)).sum();
        assert!((spent - rho).abs() < 1e-12, "{spent}");
        assert!(s[0] > s[1] && s[1] > s[2]);
        // Never worse in total L1 error than equal noise for the same budget.
        let equal = privacy::gaussian_sigma(rho, 3f64.sqrt());
        let err = |sig: &[f64]| {
            tables
                .iter()
                .zip(sig)
                .map(|(t, x)| t.len() as f64 * x)
                .sum::<f64>()
        };
        assert!(err(&s) <= err(&[equal; 3]));
    }
}
