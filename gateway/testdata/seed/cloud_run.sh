curl -X POST https://YOUR_CLOUD_RUN_URL/execute \
  -H "Content-Type: application/json" \
  -d '{"script": "def main(): return {\"message\": \"Hello from Cloud Run!\", \"calculation\": 2 + 2}"}'
