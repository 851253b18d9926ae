"""What a stack costs per month, from its offline plan and the price table in this folder.

    python -m tools.cost build/dev/plan.json build/prod/plan.json   # one estimate per plan
    python -m tools.cost --compare build/dev/plan.json build/prod/plan.json   # the README's table

`prices.py` reads `prices.csv` (one row per price, with its region, the date it was recorded and
its source page); `estimate.py` turns a plan (a Plan or its plan.json) into priced charges, pure
functions only. Offline: no pricing API is called, ever. docs/cost.md says what is counted.
"""
