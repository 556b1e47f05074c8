"""The paper's experiments: seed statistics and the verdict rule (verdicts), the experiments, claims and report
(reproduce), the power plan (plan). Above zoo.train."""
