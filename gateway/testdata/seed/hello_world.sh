   curl -X POST http://localhost:8080/execute \
     -H "Content-Type: application/json" \
     -d '{"script": "def main(): return {\"message\": \"Hello World\", \"result\": 42}"}'
   