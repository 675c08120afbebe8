"""Defaults several commands share, in a module light enough for the CLI to import at once."""

# The default synthetic city: enough districts for neighbours and sites, and eight
# weeks, so that the temporal test split (the last fifth) spans more than a week.
DEFAULT_DISTRICTS = 60
DEFAULT_DAYS = 56

# The benchmarks' city: 400 districts, so that 300 edge sites hold one or more each,
# over 60 days.
BENCH_DISTRICTS = 400
BENCH_DAYS = 60

# The demo's federation: enough local work that its map shows more than one level.
DEMO_ROUNDS = 5
DEMO_LOCAL_EPOCHS = 3
