curl -X POST http://localhost:8080/execute \
  -H "Content-Type: application/json" \
  -d '{
    "script": "
import pandas as pd
import numpy as np

def main():
    df = pd.DataFrame({\"A\": [1, 2, 3], \"B\": [4, 5, 6]})
    return {
        \"shape\": df.shape,
        \"sum\": df.sum().to_dict(),
        \"mean\": df.mean().to_dict()
    }
"
  }'
