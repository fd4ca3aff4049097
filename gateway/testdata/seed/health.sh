curl http://localhost:8080/health
