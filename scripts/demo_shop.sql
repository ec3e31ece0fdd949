-- The demo shop: a small database full of personal data, for the bastion's masking to hide.
-- Run once by scripts/demo_stack.py as the cluster's superuser; every name, email, phone and
-- card number here is made up: phones from ranges kept for fiction (555-01xx, 020 7946 0xxx),
-- card numbers the card networks publish for testing.
-- A first run stopped half-way may have left some of it: start again from nothing.
DROP DATABASE IF EXISTS shop;
DROP ROLE IF EXISTS shop_svc;
CREATE ROLE shop_svc LOGIN;
CREATE DATABASE shop OWNER shop_svc;
\connect shop
SET ROLE shop_svc;

CREATE TABLE customers (
    id int PRIMARY KEY,
    full_name text NOT NULL,
    email text NOT NULL,
    phone text,
    card_number text,
    notes text,
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE orders (
    id int PRIMARY KEY,
    customer_id int NOT NULL REFERENCES customers (id),
    placed_on date NOT NULL,
    total numeric(10, 2) NOT NULL,
    status text NOT NULL,
    delivery_note text
);

INSERT INTO customers (id, full_name, email, phone, card_number, notes) VALUES
    (4711, 'Jane Doe', 'jane.doe@example.com', '+1 202-555-0143', '4111 1111 1111 1111',
     'VIP. Prefers a call on +1 202-555-0143 before delivery.'),
    (4712, 'John Roe', 'john.roe@example.org', '+44 20 7946 0958', '5500 0000 0000 0004',
     'Asked to be mailed at john.work@example.net instead.'),
    (4713, 'Maria Rossi', 'maria.rossi@example.it', '+39 06 4991 2345', '3400 0000 0000 009',
     'Disputed order 3; refunded to card 3400 0000 0000 009.'),
    (4714, 'Pieter de Vries', 'pieter@example.nl', '+31 6 12345678', '6011 0000 0000 0004',
     'Ships to the office.'),
    (4715, 'Aiko Tanaka', 'aiko.tanaka@example.jp', '+1 415-555-0134', '3530 1113 3330 0000',
     'Newsletter: no.'),
    (4716, 'Samuel Okafor', 'sam.okafor@example.com', '+44 20 7946 0321', '4012 8888 8888 1881',
     'Gift orders go to his sister, call +44 20 7946 0555.');

INSERT INTO orders (id, customer_id, placed_on, total, status, delivery_note) VALUES
    (1, 4711, '2026-11-02', 129.90, 'delivered', 'Leave with the neighbour at no. 12'),
    (2, 4712, '2026-11-03', 19.99, 'delivered', NULL),
    (3, 4713, '2026-11-05', 74.50, 'refunded', 'Customer says parcel arrived damaged'),
    (4, 4711, '2026-11-09', 12.00, 'delivered', NULL),
    (5, 4714, '2026-11-12', 310.00, 'shipped', 'Call +31 6 12345678 at the door'),
    (6, 4715, '2026-11-20', 45.25, 'paid', NULL),
    (7, 4716, '2026-11-28', 88.80, 'paid', 'Gift wrap, no invoice in the box'),
    (8, 4712, '2026-12-01', 5.49, 'cancelled', NULL);

RESET ROLE;
ANALYZE customers, orders;
