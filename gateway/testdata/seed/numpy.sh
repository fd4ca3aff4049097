curl -X POST http://localhost:8080/execute \
  -H "Content-Type: application/json" \
  -d '{
    "script": "
import numpy as np

def main():
    arr = np.array([1, 2, 3, 4, 5])
    return {
        \"array\": arr.tolist(),
        \"sum\": float(np.sum(arr)),
        \"mean\": float(np.mean(arr)),
        \"std\": float(np.std(arr))
    }
"
  }'
