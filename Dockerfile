# Multi-stage build of the baton binary.
FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o /out/baton .

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/baton /usr/local/bin/baton
COPY config.yaml /etc/baton/config.yaml
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/baton"]
CMD ["serve", "--config", "/etc/baton/config.yaml"]
