-- The factoring domain of shared/DOMAIN.md, SQLite flavour (the PostgreSQL one is the
-- same tables with native types).
--
-- Money is exact: every amount is an INTEGER of céntimos (1500.25 PEN is 150025) and
-- every exchange rate an INTEGER of ten-thousandths (3.7512 PEN per USD is 37512).
-- SQLite has no decimal type, and integers keep sums and conversions exact in SQL on
-- both databases. Dates are TEXT 'YYYY-MM-DD', which sorts and compares as dates.

CREATE TABLE clientes (
    id           INTEGER PRIMARY KEY,
    ruc          TEXT NOT NULL UNIQUE,
    razon_social TEXT NOT NULL
);

CREATE TABLE deudores (
    id           INTEGER PRIMARY KEY,
    ruc          TEXT NOT NULL UNIQUE,
    razon_social TEXT NOT NULL
);

CREATE TABLE operaciones (
    id              INTEGER PRIMARY KEY,
    cliente_id      INTEGER NOT NULL REFERENCES clientes (id),
    fecha_operacion TEXT NOT NULL CHECK (date(fecha_operacion) IS fecha_operacion),
    moneda          TEXT NOT NULL CHECK (moneda IN ('PEN', 'USD')),
    monto_neto      INTEGER NOT NULL CHECK (monto_neto >= 0),
    interes         INTEGER NOT NULL CHECK (interes >= 0),
    comision        INTEGER NOT NULL CHECK (comision >= 0)
);
CREATE INDEX operaciones_fecha ON operaciones (fecha_operacion);
CREATE INDEX operaciones_cliente ON operaciones (cliente_id);

CREATE TABLE facturas (
    id                INTEGER PRIMARY KEY,
    operacion_id      INTEGER NOT NULL REFERENCES operaciones (id),
    deudor_id         INTEGER NOT NULL REFERENCES deudores (id),
    numero            TEXT NOT NULL,
    monto             INTEGER NOT NULL CHECK (monto > 0),
    fecha_emision     TEXT NOT NULL CHECK (date(fecha_emision) IS fecha_emision),
    fecha_vencimiento TEXT NOT NULL CHECK (date(fecha_vencimiento) IS fecha_vencimiento),
    UNIQUE (operacion_id, numero)
);
CREATE INDEX facturas_deudor ON facturas (deudor_id);

CREATE TABLE cobranzas (
    id         INTEGER PRIMARY KEY,
    factura_id INTEGER NOT NULL REFERENCES facturas (id),
    fecha_pago TEXT NOT NULL CHECK (date(fecha_pago) IS fecha_pago),
    monto      INTEGER NOT NULL CHECK (monto > 0)
);
-- monto too: toolbox.tablas_cxc sums an invoice's payments up to a date from the index
-- alone (its statement over 1,000,000 operations on SQLite: 3.9 s → 2.9 s).
CREATE INDEX cobranzas_factura ON cobranzas (factura_id, fecha_pago, monto);

-- relleno = 1: a date without a quote of its own (weekend, holiday), filled by
-- toolbox.tipo_cambio with the last quoted rate; a later quote for it replaces it.
CREATE TABLE tipo_cambio (
    fecha   TEXT PRIMARY KEY CHECK (date(fecha) IS fecha),
    compra  INTEGER NOT NULL CHECK (compra > 0),
    venta   INTEGER NOT NULL CHECK (venta > 0),
    relleno INTEGER NOT NULL DEFAULT 0 CHECK (relleno IN (0, 1))
);

-- Outputs, each rebuilt whole in one transaction by its task.

CREATE TABLE reporte_cxc (
    factura_id   INTEGER PRIMARY KEY,
    fecha_corte  TEXT NOT NULL,
    deudor_id    INTEGER NOT NULL,
    cliente_id   INTEGER NOT NULL,
    moneda       TEXT NOT NULL,
    saldo        INTEGER NOT NULL,
    saldo_pen    INTEGER NOT NULL,
    dias_vencido INTEGER NOT NULL,
    tramo        TEXT NOT NULL
);

CREATE TABLE reporte_operaciones (
    operacion_id   INTEGER PRIMARY KEY,
    periodo        TEXT NOT NULL,
    cliente_id     INTEGER NOT NULL,
    razon_social   TEXT NOT NULL,
    moneda         TEXT NOT NULL,
    monto_neto     INTEGER NOT NULL,
    monto_neto_pen INTEGER NOT NULL,
    ingresos_pen   INTEGER NOT NULL,
    n_facturas     INTEGER NOT NULL
);

CREATE TABLE kpi_mensual (
    periodo             TEXT PRIMARY KEY,
    n_operaciones       INTEGER NOT NULL,
    colocaciones_pen    INTEGER NOT NULL,
    ingresos_pen        INTEGER NOT NULL,
    clientes_distintos  INTEGER NOT NULL,
    ticket_promedio_pen INTEGER NOT NULL
);

CREATE TABLE kpi_acumulado (
    periodo                TEXT PRIMARY KEY,
    n_operaciones_ytd      INTEGER NOT NULL,
    colocaciones_pen_ytd   INTEGER NOT NULL,
    ingresos_pen_ytd       INTEGER NOT NULL,
    clientes_distintos_ytd INTEGER NOT NULL
);
