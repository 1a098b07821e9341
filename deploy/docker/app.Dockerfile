# An image of your own on top of graceful's (the Dockerfile at the root of this repository,
# built as graceful:0.1.0): your requirements and your app, served by graceful as PID 1.
#   docker build -f app.Dockerfile -t myapp .
#   docker run --rm -p 8080:8080 -v myapp-data:/data myapp
FROM graceful:0.1.0
WORKDIR /app
USER 0
COPY requirements.txt ./
RUN pip install --no-cache-dir -r requirements.txt
USER 10001:10001
COPY app.py ./
CMD ["app:create_app", "--checkpoint", "/data/state.json"]
