"""A realistic shop schema for the masking tests: customers, orders (partitioned), payments,
a view, a SQL function, and a table whose name rule is a false positive."""

from __future__ import annotations

from tests.realpg import PgCluster, PgDatabase, random_password, unique_name

SHOP_SQL = (
    "CREATE TABLE customers (id int PRIMARY KEY, name text NOT NULL, email text NOT NULL,"
    " phone varchar(32), ssn char(11), date_of_birth date, street text, client_ip inet,"
    " created_at timestamptz NOT NULL DEFAULT '2026-01-01')",
    "CREATE TABLE orders (id int, customer_id int NOT NULL, placed_on date NOT NULL,"
    " total_cents int NOT NULL, note text) PARTITION BY RANGE (placed_on)",
    "CREATE TABLE orders_2025 PARTITION OF orders FOR VALUES FROM ('2025-01-01') TO ('2026-01-01')",
    "CREATE TABLE orders_2026 PARTITION OF orders FOR VALUES FROM ('2026-01-01') TO ('2027-01-01')",
    "CREATE TABLE payments (id int PRIMARY KEY, order_id int NOT NULL, card_number text,"
    " iban text, amount_cents int NOT NULL)",
    "CREATE TABLE newsletter_stats (day date PRIMARY KEY, email_count int NOT NULL)",
    "CREATE VIEW customer_contacts AS SELECT id, name, email, phone FROM customers",
    "CREATE FUNCTION top_customer() RETURNS text LANGUAGE sql STABLE"
    " AS $$ SELECT email FROM customers ORDER BY id LIMIT 1 $$",
    "INSERT INTO customers (id, name, email, phone, ssn, date_of_birth, street, client_ip) VALUES"
    " (4711, 'Jane Doe', 'jane.doe@example.com', '+1 555-123-4567', '123-45-6789',"
    "  '1985-04-12', '1 Main Street', '203.0.113.7'),"
    " (4712, 'John Roe', 'john.roe@example.org', '+44 20 7946 0958', '987-65-4321',"
    "  '1990-09-30', '22 High Road', '198.51.100.23')",
    "INSERT INTO orders VALUES (1, 4711, '2025-12-24', 1999, 'gift wrap please'),"
    " (2, 4712, '2026-02-01', 4500, 'call jane.doe@example.com before delivery')",
    "INSERT INTO payments VALUES (1, 1, '4111 1111 1111 1111', 'DE89370400440532013000', 1999),"
    " (2, 2, '5500 0000 0000 0004', 'GB82WEST12345698765432', 4500)",
    "INSERT INTO newsletter_stats VALUES ('2026-11-01', 1200)",
)

# Every value the tests must never see in clear through a masked session.
SECRETS = ("jane.doe@example.com", "john.roe@example.org", "555-123-4567", "7946 0958",
           "123-45-6789", "987-65-4321", "1985-04-12", "1990-09-30", "1 Main Street",
           "22 High Road", "4111 1111 1111 1111", "5500 0000 0000 0004",
           "DE89370400440532013000", "GB82WEST12345698765432", "203.0.113.7")  # fmt: skip


def make_shop(cluster: PgCluster) -> PgDatabase:
    """A fresh database with the shop schema, owned by a fresh login role."""
    owner, password = unique_name("shop_svc"), random_password()
    cluster.create_role(owner, password)
    name = unique_name("shop_db")
    cluster.create_database(name, owner)
    with cluster.connect(name) as conn:
        conn.execute(f'SET ROLE "{owner}"')
        for statement in SHOP_SQL:
            conn.execute(statement)
        conn.execute("RESET ROLE")
    return PgDatabase(cluster.host, cluster.port, name, owner, password, cluster)
